package symbolize

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestStreamMatchesLLVMText compares the text `ember symbolize --exe` prints
// (SymbolizeStream) with llvm-symbolizer-19's, block by block, including
// addresses nothing is known about.
func TestStreamMatchesLLVMText(t *testing.T) {
	llvm := requireTool(t, "llvm-symbolizer-19")
	for _, mb := range []matrixBinary{
		{"gcc -O2 DWARF5", cBuild("gcc", "-O2", "-gdwarf-5")},
		{"clang-19 -O2 DWARF5", cBuild("clang-19", "-O2", "-gdwarf-5")},
		{"g++ -O2 templates", cxxBuild("g++", "-O2", "-g")},
	} {
		t.Run(strings.ReplaceAll(mb.name, " ", "_"), func(t *testing.T) {
			path, _ := mb.build(t)
			addrs := textAddresses(t, path, 1000)
			var in bytes.Buffer
			for i, a := range addrs {
				if i%2 == 0 {
					fmt.Fprintf(&in, "0x%x\n", a)
				} else {
					fmt.Fprintf(&in, "%x ", a) // no 0x, several per line
				}
			}
			in.WriteString("\n0x10\n") // below every symbol: unknown
			o, err := OpenObject(path)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			var ours bytes.Buffer
			if err := SymbolizeStream(bytes.NewReader(in.Bytes()), &ours, o, false); err != nil {
				t.Fatal(err)
			}
			// llvm-symbolizer takes one address per line, and reads one without
			// 0x as decimal; ember reads every address as hex.
			var llvmIn strings.Builder
			for _, f := range strings.Fields(in.String()) {
				llvmIn.WriteString("0x" + strings.TrimPrefix(f, "0x") + "\n")
			}
			cmd := exec.Command(llvm, "--obj="+path, "--no-demangle")
			cmd.Stdin = strings.NewReader(llvmIn.String())
			theirs, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			pct := llvmTextAgreement(ours.Bytes(), theirs)
			t.Logf("%s: output identical to llvm-symbolizer-19 --no-demangle for %.2f%% of %d addresses", mb.name, pct, len(addrs)+1)
			if pct < 99 {
				t.Errorf("%.2f%% identical, want >= 99%%", pct)
			}
			if !strings.HasSuffix(ours.String(), "\n\n??\n??:0:0\n\n") {
				t.Errorf("unknown addresses not printed as ?? and ??:0:0: %q", ours.String()[max(0, ours.Len()-60):])
			}
		})
	}
}
