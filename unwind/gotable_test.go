package unwind

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/emberprof/ember/symbolize/gopclntab"
)

// buildGo builds testdata/goarm64 (leaf and framed functions, sort, fmt)
// for goarch, stripped or not, once per test run.
func buildGo(t testing.TB, goarch string, stripped bool) string {
	t.Helper()
	name := "gotab-" + goarch
	args := []string{"build", "-o"}
	if stripped {
		name += "-stripped"
	}
	out := filepath.Join(buildDir, name)
	r, _ := builds.LoadOrStore(out, &buildResult{})
	res := r.(*buildResult)
	res.once.Do(func() {
		args = append(args, out)
		if stripped {
			args = append(args, "-ldflags=-s -w")
		}
		cmd := exec.Command("go", append(args, "./testdata/goarm64/main.go")...)
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+goarch, "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			res.err = err
			t.Logf("%s", b)
		}
		res.path = out
	})
	if res.err != nil {
		t.Fatalf("go build %s: %v", name, res.err)
	}
	return res.path
}

// TestGoRowsMatchDebugFrame holds the rows derived from the pclntab against
// the .debug_frame the Go linker writes for the same functions (from the
// same pcsp tables, cmd/link/internal/ld/dwarf.go writeframes), for amd64
// and arm64: CFA and return address must agree at every PC where either
// changes, except in TOPFRAME and SPWRITE functions, where the pclntab rows
// deliberately differ (end of stack; frame-pointer step).
func TestGoRowsMatchDebugFrame(t *testing.T) {
	for _, goarch := range []string{"amd64", "arm64"} {
		t.Run(goarch, func(t *testing.T) {
			path := buildGo(t, goarch, false)
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			arch, _ := archOf(f)
			df, err := NewTableFunc(f, nil)
			if err != nil {
				t.Fatal(err)
			}
			gt, err := NewTable(f)
			if err != nil {
				t.Fatal(err)
			}
			if gt.Go == nil || gt.Go.Funcs < 1000 || gt.Go.BadFuncs != 0 {
				t.Fatalf("Go stats %+v", gt.Go)
			}
			syms, _ := f.Symbols()
			pt, err := gopclntab.Find(f, elfImage{f}, gopclntab.RuntimeSymbols(syms))
			if err != nil {
				t.Fatal(err)
			}
			var pcs []uint64
			for _, r := range df.Rows {
				pcs = append(pcs, r.PC)
			}
			for _, r := range gt.Rows {
				pcs = append(pcs, r.PC)
			}
			sort.Slice(pcs, func(i, j int) bool { return pcs[i] < pcs[j] })
			var compared, agreed, special, marked, mismatches int
			for _, pc := range pcs {
				fn, ok, _ := pt.FuncAt(pc)
				if !ok {
					continue
				}
				want, ok1 := df.Lookup(pc)
				got, ok2 := gt.Lookup(pc)
				if !ok1 || !ok2 || want.CFA == CFANone {
					continue
				}
				compared++
				if fn.Flag&(gopclntab.FlagTopFrame|gopclntab.FlagSPWrite) != 0 {
					special++
					continue
				}
				if got.CFA == want.CFA && got.CFAOffset == want.CFAOffset && got.RA == want.RA && got.RAOffset == want.RAOffset {
					agreed++
					continue
				}
				if got.CFA == CFABadRule && want.CFA == CFASP && want.CFAOffset <= 0 {
					// A negative SP delta (syscall.rawVforkSyscall pops
					// its RA; asyncPreempt's epilogue on arm64): marked
					// here, a nonsense CFA there.
					marked++
					continue
				}
				mismatches++
				if mismatches <= 10 {
					t.Errorf("%s+%#x (%#x): pclntab %+v, .debug_frame %+v", pt.Name(fn.NameOff), pc-fn.Entry, pc, got, want)
				}
			}
			t.Logf("%s (%v): %d PCs compared, %d agree, %d in TOPFRAME/SPWRITE functions, %d marked bad (negative SP delta), %d mismatches; Go stats %+v",
				goarch, arch, compared, agreed, special, marked, mismatches, *gt.Go)
			if agreed < 1000 {
				t.Errorf("only %d PCs agree", agreed)
			}
		})
	}
}

// TestGoTableStripped: stripping (-s -w) removes the symbols and
// .debug_frame but not the pclntab, so the table is the same.
func TestGoTableStripped(t *testing.T) {
	for _, goarch := range []string{"amd64", "arm64"} {
		t.Run(goarch, func(t *testing.T) {
			full, err := Open(buildGo(t, goarch, false))
			if err != nil {
				t.Fatal(err)
			}
			sf, err := elf.Open(buildGo(t, goarch, true))
			if err != nil {
				t.Fatal(err)
			}
			defer sf.Close()
			if sf.Section(".debug_frame") != nil || sf.Section(".symtab") != nil {
				t.Fatal("stripped binary has .debug_frame or .symtab")
			}
			stripped, err := NewTable(sf)
			if err != nil {
				t.Fatal(err)
			}
			if len(stripped.Rows) != len(full.Rows) {
				t.Fatalf("stripped %d rows, unstripped %d", len(stripped.Rows), len(full.Rows))
			}
			for i := range full.Rows {
				if stripped.Rows[i] != full.Rows[i] {
					t.Fatalf("row %d: stripped %+v, unstripped %+v", i, stripped.Rows[i], full.Rows[i])
				}
			}
			t.Logf("%s: %d rows, %d rules", goarch, len(full.Rows), mustEncode(t, full).NumRules())
		})
	}
}

func mustEncode(t testing.TB, tab *Table) *Encoded {
	t.Helper()
	e, err := tab.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestGoRowsKnown checks the rows of hand-made runs: amd64 with and without
// the PUSHQ BP prologue, arm64 leaf and framed, TOPFRAME and SPWRITE.
func TestGoRowsKnown(t *testing.T) {
	amd := goRow(AMD64, 0x10, 0, false)
	if want := (Row{PC: 0x10, CFA: CFASP, CFAOffset: 8, RA: RAOffset, RAOffset: -8}); amd != want {
		t.Errorf("amd64 entry %+v, want %+v", amd, want)
	}
	amd = goRow(AMD64, 0x11, 40, true)
	if want := (Row{PC: 0x11, CFA: CFASP, CFAOffset: 48, RA: RAOffset, RAOffset: -8, FP: FPOffset, FPOffset: -16}); amd != want {
		t.Errorf("amd64 body %+v, want %+v", amd, want)
	}
	if r := goRow(AMD64, 0x11, 40, false); r.FP != FPSame {
		t.Errorf("amd64 frame without PUSHQ BP: %+v", r)
	}
	arm := goRow(ARM64, 0x20, 0, false)
	if want := (Row{PC: 0x20, CFA: CFASP, RA: RALink}); arm != want {
		t.Errorf("arm64 leaf %+v, want %+v", arm, want)
	}
	arm = goRow(ARM64, 0x24, 48, false)
	if want := (Row{PC: 0x24, CFA: CFASP, CFAOffset: 48, RA: RAOffset, RAOffset: -48, FP: FPOffset, FPOffset: -56}); arm != want {
		t.Errorf("arm64 framed %+v, want %+v", arm, want)
	}
	for _, r := range []Row{goRow(AMD64, 1, -8, true), goRow(ARM64, 1, 1<<16, false), goRow(AMD64, 1, 1<<24, true)} {
		if r.CFA != CFABadRule {
			t.Errorf("out of range delta gave %+v", r)
		}
	}
}

// TestGoRowsWalkLeaf walks a synthetic arm64 stack with the encoded rows: a
// frameless leaf (RA in x30) called by a framed function.
func TestGoRowsWalkLeaf(t *testing.T) {
	tab := &Table{Arch: ARM64, Rows: []Row{
		goRow(ARM64, 0x1000, 0, false), // leaf: no frame at all
		{PC: 0x1010, CFA: CFANone},
		goRow(ARM64, 0x2000, 0, false), // caller: entry
		goRow(ARM64, 0x2004, 32, false),
		{PC: 0x2100, CFA: CFANone},
	}}
	var m Maps
	id, err := m.AddTable(tab)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetProc(1, []Mapping{{Start: 0x1000, End: 0x2100, TableID: id}}); err != nil {
		t.Fatal(err)
	}
	const sp = 0x7000
	mem := map[uint64]uint64{
		sp:     0x2abc, // the caller's frame: [SP] = its own RA (into 0x2abc),
		sp - 8: 0,      // and below it its caller's FP
	}
	read := func(addr uint64, n int) ([]byte, error) {
		v, ok := mem[addr]
		if !ok || n != 8 {
			return nil, errors.New("unmapped")
		}
		b := make([]byte, 8)
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		return b, nil
	}
	pcs, reason := Unwind(Regs{PC: 0x1008, SP: sp, LR: 0x2050}, read, &m, 1)
	// leaf -> caller (from x30) -> the caller's RA, outside the mapping.
	if len(pcs) < 2 || pcs[0] != 0x1008 || pcs[1] != 0x2050 {
		t.Fatalf("walk %#x (%v)", pcs, reason)
	}
	if len(pcs) != 3 || pcs[2] != 0x2abc || reason != ReasonNoMapping {
		t.Errorf("walk %#x (%v), want [0x1008 0x2050 0x2abc] (no-mapping)", pcs, reason)
	}
}

// TestGoOld: a Go binary older than Go 1.20 (here the test program with its
// pclntab magic set to Go 1.18's) gets ErrOldGo, which the loader turns into
// a frame-pointer mapping, counted.
func TestGoOld(t *testing.T) {
	path := buildGo(t, "amd64", true)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	off := f.Section(".gopclntab").Offset
	f.Close()
	b[off] = 0xf0 // 0xfffffff1 -> 0xfffffff0, little endian
	old := filepath.Join(t.TempDir(), "old")
	if err := os.WriteFile(old, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(old); !errors.Is(err, ErrOldGo) {
		t.Errorf("Go 1.18 pclntab: %v, want ErrOldGo", err)
	}
}
