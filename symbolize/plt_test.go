package symbolize

import (
	"bufio"
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// pltLabel is a label objdump -d prints for a symbol, synthesized or not:
// "0000000000026030 <realloc@plt>:".
var pltLabel = regexp.MustCompile(`^([0-9a-f]+) <(.+)>:$`)

// labelVersion is a symbol version in an objdump label
// ("memcpy@GLIBC_2.14@plt"): Ember's names have none.
var labelVersion = regexp.MustCompile(`@@?[^@]+(@plt)$`)

// relativeLabel is a label of an address relative to a symbol (PLT0 is
// "<realloc@plt-0x10>"), which names nothing.
var relativeLabel = regexp.MustCompile(`[-+]0x[0-9a-f]+$`)

// TestPLTNamesMatchObjdump: every PLT stub objdump names (NAME@plt, from
// .plt, .plt.sec and .plt.got) Ember names the same at its first and last
// byte, in the C library, the dynamic loader, ls, and a C program built
// with and without IBT (-fcf-protection=full -z ibtplt, which moves the
// stubs to .plt.sec). objdump is the truth: binutils synthesizes these
// names itself, from the relocations, as perf does.
func TestPLTNamesMatchObjdump(t *testing.T) {
	objdump, err := exec.LookPath("objdump")
	if err != nil {
		t.Fatal("objdump is not installed: this test needs binutils (make deps installs gcc, which brings it)")
	}
	requireTool(t, "gcc")
	files := append([]string{
		"/usr/lib/x86_64-linux-gnu/libc.so.6",
		"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/bin/ls",
	}, pltPrograms(t)...)
	for _, path := range files {
		if _, err := os.Stat(path); err != nil {
			t.Logf("%s: %v: skipped", path, err)
			continue
		}
		stubs := objdumpStubs(t, objdump, path)
		if path == files[4] {
			if ef, err := elf.Open(path); err != nil {
				t.Fatal(err)
			} else if ef.Section(".plt.sec") == nil {
				t.Errorf("%s has no .plt.sec: the test no longer covers IBT stubs", path)
			}
		}
		if len(stubs) == 0 {
			if path == files[1] {
				t.Logf("%s: no PLT stubs", path)
				continue
			}
			t.Errorf("%s: objdump names no PLT stub", path)
			continue
		}
		o, err := OpenObject(path)
		if err != nil {
			t.Fatal(err)
		}
		compared := 0
		for _, s := range stubs {
			for _, a := range []uint64{s.addr, s.addr + s.size - 1} {
				fr, err := o.Frames(a)
				got := ""
				if len(fr) > 0 {
					got = fr[len(fr)-1].Function
				}
				if want := labelVersion.ReplaceAllString(s.name, "$1"); got != want {
					t.Errorf("%s: %#x (stub %#x+%d): %q, objdump says %q (err %v)", path, a, s.addr, s.size, got, want, err)
				}
				compared++
			}
		}
		// And Ember names no stub objdump does not, nor over other bytes.
		want := make(map[uint64]pltStub, len(stubs))
		for _, s := range stubs {
			want[s.addr] = s
		}
		ours := 0
		for _, s := range o.syms.syms {
			if !s.stub {
				continue
			}
			ours++
			if w, ok := want[s.addr]; !ok || labelVersion.ReplaceAllString(w.name, "$1") != s.name || w.size != s.size {
				t.Errorf("%s: Ember's stub %#x+%d %q, objdump's %+v", path, s.addr, s.size, s.name, w)
			}
		}
		if ours != len(stubs) {
			t.Errorf("%s: Ember synthesized %d stubs, objdump names %d", path, ours, len(stubs))
		}
		o.Close()
		t.Logf("%s: %d stubs, %d addresses compared (debug file %q)", path, len(stubs), compared, o.DebugFile())
	}
}

// pltStub is a stub objdump names: from its label to the next label or the
// end of its section.
type pltStub struct {
	addr, size uint64
	name       string
}

// objdumpStubs disassembles the PLT sections of path and returns the
// stubs objdump names, NAME@plt, with their versions.
func objdumpStubs(t *testing.T, objdump, path string) []pltStub {
	t.Helper()
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	var stubs []pltStub
	for _, name := range []string{".plt", ".plt.sec", ".plt.got"} {
		sec := ef.Section(name)
		if sec == nil {
			continue
		}
		out, err := exec.Command(objdump, "-d", "--section="+name, path).Output()
		if err != nil {
			t.Fatalf("objdump -d --section=%s %s: %v", name, path, err)
		}
		type label struct {
			addr uint64
			name string
		}
		var labels []label
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			m := pltLabel.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			a, err := strconv.ParseUint(m[1], 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			labels = append(labels, label{a, m[2]})
		}
		end := sec.Addr + sec.Size
		for i, l := range labels {
			next := end
			if i+1 < len(labels) {
				next = labels[i+1].addr
			}
			// Not a name: the section's own label, or an offset from one.
			if l.name == name || relativeLabel.MatchString(l.name) {
				continue
			}
			if l.addr < sec.Addr || next > end || next <= l.addr {
				t.Fatalf("%s: label %#x <%s> outside %s", path, l.addr, l.name, name)
			}
			stubs = append(stubs, pltStub{l.addr, next - l.addr, l.name})
		}
	}
	return stubs
}

// pltPrograms builds testdata/plt.c, dynamically linked, in two forms: the
// default (stubs in .plt and .plt.got) and with IBT (-fcf-protection=full
// -z ibtplt: lazy stubs in .plt, the named ones in .plt.sec). FuzzELF
// starts from them too. None without gcc.
func pltPrograms(tb testing.TB) []string {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return nil
	}
	return []string{
		built(tb, "plt-default", func(dir, o string) {
			run(tb, dir, gcc, "-O1", "-o", o, srcPath(tb, "plt.c"))
		}),
		built(tb, "plt-ibt", func(dir, o string) {
			run(tb, dir, gcc, "-O1", "-fcf-protection=full", "-Wl,-z,ibtplt", "-o", o, srcPath(tb, "plt.c"))
		}),
	}
}

// FuzzPLT feeds mutated dynamically linked programs to pltStubs alone
// (FuzzELF, which opens whole objects, runs few inputs a second): no input
// may panic, and every stub must lie in a PLT section, be named NAME@plt,
// and not overlap the next.
func FuzzPLT(f *testing.F) {
	for _, p := range pltPrograms(f) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ef, err := elf.NewFile(bytesReaderAt(data))
		if err != nil {
			return
		}
		stubs, _ := pltStubs(ef, data)
		for i, s := range stubs {
			in := false
			for _, n := range []string{".plt", ".plt.sec", ".plt.got"} {
				if sec := ef.Section(n); sec != nil && s.addr >= sec.Addr && s.addr-sec.Addr+s.size <= sec.Size {
					in = true
				}
			}
			if !in || len(s.name) <= len("@plt") || s.name[len(s.name)-len("@plt"):] != "@plt" && len(s.name) < maxNameLen {
				t.Fatalf("stub %+v", s)
			}
			if i > 0 && stubs[i-1].addr+stubs[i-1].size > s.addr && stubs[i-1].addr != s.addr {
				t.Fatalf("stubs %+v and %+v overlap", stubs[i-1], s)
			}
		}
		tab, _, err := newSymtab(ef, data)
		for i := 1; err == nil && i < len(tab.syms); i++ {
			if tab.syms[i-1].addr >= tab.syms[i].addr {
				t.Fatalf("table out of order at %d: %#x, %#x", i, tab.syms[i-1].addr, tab.syms[i].addr)
			}
		}
	})
}
