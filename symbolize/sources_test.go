package symbolize

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/pprof/profile"
)

func TestSymbolizeKernel(t *testing.T) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		t.Skipf("no /proc/kallsyms: %v", err)
	}
	defer f.Close()
	var sched, mod uint64
	var modName, modSym string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 3 || (fl[1] != "T" && fl[1] != "t") {
			continue
		}
		a, _ := strconv.ParseUint(fl[0], 16, 64)
		if fl[2] == "schedule" && len(fl) == 3 {
			sched = a
		}
		if len(fl) == 4 && mod == 0 && a != 0 {
			mod, modSym, modName = a, fl[2], fl[3]
		}
	}
	if sched == 0 {
		if strict() {
			t.Fatal("kallsyms shows no address for schedule (kptr_restrict, not root?)")
		}
		t.Skip("kallsyms shows no address for schedule (kptr_restrict, not root?)")
	}
	m := &profile.Mapping{ID: 1, File: KernelFile}
	p := &profile.Profile{Mapping: []*profile.Mapping{m}, Location: []*profile.Location{{ID: 1, Address: sched + 1, Mapping: m}}}
	if mod != 0 {
		p.Location = append(p.Location, &profile.Location{ID: 2, Address: mod, Mapping: m})
	}
	s := New(Options{})
	defer s.Close()
	if err := s.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	if l := p.Location[0].Line; len(l) != 1 || l[0].Function.Name != "schedule" || l[0].Function.Filename != KernelFile {
		t.Errorf("schedule+1: %+v", l)
	}
	if mod != 0 {
		if l := p.Location[1].Line; len(l) != 1 || l[0].Function.Name != modSym || l[0].Function.Filename != modName {
			t.Errorf("module symbol %s %s: got %+v", modSym, modName, l[0].Function)
		}
	}
}

func TestParseKallsyms(t *testing.T) {
	in := "0000000000000000 A fixed_percpu_data\n" +
		"ffffffff81000000 T _text\n" +
		"ffffffff81001000 t do_one_initcall\n" +
		"ffffffff81002000 D some_data\n" +
		"ffffffffc0001000 t helper_fn\t[nf_tables]\n" +
		"ffffffffc0000000 T init_fn\t[nf_tables]\n"
	k, err := parseKallsyms(strings.NewReader(in), "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr      uint64
		name, mod string
	}{
		{0xffffffff81000010, "_text", KernelFile},
		{0xffffffff81001fff, "do_one_initcall", KernelFile},
		{0xffffffffc0000005, "init_fn", "[nf_tables]"},
		{0xffffffffc0001005, "helper_fn", "[nf_tables]"},
	} {
		f, ok := k.lookup(c.addr)
		if !ok || f.Function != c.name || f.File != c.mod {
			t.Errorf("%#x: %+v %v, want %s %s", c.addr, f, ok, c.name, c.mod)
		}
	}
	if _, ok := k.lookup(0x1000); ok {
		t.Error("address below every symbol resolved")
	}
	if _, err := parseKallsyms(strings.NewReader("0000000000000000 T _text\n"), "zeros"); err == nil {
		t.Error("all-zero kallsyms accepted")
	}
}

// Every text symbol of the running kernel resolves to itself (or to an alias
// at the same address) with its module: the names arena and module indexes
// hold for a whole real table, not just a few lines.
func TestParseKallsymsWhole(t *testing.T) {
	b, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		t.Skipf("no /proc/kallsyms: %v", err)
	}
	k, err := parseKallsyms(strings.NewReader(string(b)), "/proc/kallsyms")
	if err != nil {
		if strict() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	type where struct {
		addr uint64
		mod  string
	}
	at := map[string][]where{}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		fl := strings.Fields(line)
		if len(fl) < 3 || !strings.Contains("tTwW", fl[1]) || len(fl[1]) != 1 {
			continue
		}
		a, _ := strconv.ParseUint(fl[0], 16, 64)
		mod := KernelFile
		if len(fl) == 4 {
			mod = fl[3]
		}
		at[fl[2]] = append(at[fl[2]], where{a, mod})
		n++
	}
	if len(k.syms) != n {
		t.Errorf("%d symbols kept, %d text symbols in the file", len(k.syms), n)
	}
	bad := 0
	for name, ws := range at {
		for _, w := range ws {
			f, ok := k.lookup(w.addr)
			if !ok {
				t.Fatalf("%s at %#x not found", name, w.addr)
			}
			// An alias at the same address may win; it must be at w.addr.
			found := false
			for _, o := range at[f.Function] {
				if o.addr == w.addr && o.mod == f.File {
					found = true
				}
			}
			if !found {
				if bad++; bad <= 5 {
					t.Errorf("%s %s at %#x resolved to %s %s", name, w.mod, w.addr, f.Function, f.File)
				}
			}
		}
	}
	t.Logf("%d text symbols, %d modules, %d bytes of names", n, len(k.modules)-1, len(k.names))
}

func BenchmarkParseKallsyms(b *testing.B) {
	data, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		b.Skip(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseKallsyms(strings.NewReader(string(data)), "kallsyms"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSymbolizePerfMap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "perf-4242.map")
	os.WriteFile(path, []byte("7f0000001000 100 py::main:/app/x.py\n7f0000001100 80 LazyCompile:*fib /app/f.js:3\n"+
		"0x7f0000002000 0x40 jitted\n7f0000001000 100 py::main_v2:/app/x.py\n"), 0o644)
	m := &profile.Mapping{ID: 1, Start: 0x7f0000000000, Limit: 0x7f0000100000, File: path}
	p := &profile.Profile{Mapping: []*profile.Mapping{m}}
	for i, a := range []uint64{0x7f0000001010, 0x7f0000001120, 0x7f000000203f, 0x7f0000003000} {
		p.Location = append(p.Location, &profile.Location{ID: uint64(i + 1), Address: a, Mapping: m})
	}
	s := New(Options{})
	defer s.Close()
	if err := s.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	want := []string{"py::main_v2:/app/x.py", "LazyCompile:*fib /app/f.js:3", "jitted", ""}
	for i, w := range want {
		got := ""
		if len(p.Location[i].Line) > 0 {
			got = p.Location[i].Line[0].Function.Name
		}
		if got != w {
			t.Errorf("%#x: %q, want %q", p.Location[i].Address, got, w)
		}
	}
}

// TestPerfMapFromRealJITs runs Python 3.12+ with -X perf and node with
// --perf-basic-prof, and symbolizes every entry of the maps they write.
func TestPerfMapFromRealJITs(t *testing.T) {
	type jit struct {
		name string
		cmd  []string
		env  []string
	}
	var jits []jit
	for _, py := range append(globPaths("/root/.pyenv/versions/3.1[2-9]*/bin/python3"), "python3.13", "python3.12") {
		if p, err := exec.LookPath(py); err == nil {
			if exec.Command(p, "-c", "import sys; assert sys.version_info >= (3, 12)").Run() == nil {
				jits = append(jits, jit{"python", []string{p, "-X", "perf", "-c", "def f(n):\n return n if n < 2 else f(n-1)+f(n-2)\nf(22)"}, nil})
				break
			}
		}
	}
	if node, err := exec.LookPath("node"); err == nil {
		jits = append(jits, jit{"node", []string{node, "--perf-basic-prof", "-e", "function fib(n){return n<2?n:fib(n-1)+fib(n-2)}; fib(27)"}, nil})
	}
	if len(jits) == 0 {
		t.Skip("neither python >= 3.12 nor node is installed")
	}
	for _, j := range jits {
		t.Run(j.name, func(t *testing.T) {
			cmd := exec.Command(j.cmd[0], j.cmd[1:]...)
			cmd.Dir = t.TempDir() // node also writes V8 logs to its directory
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", j.cmd, err, out)
			}
			path := "/tmp/perf-" + strconv.Itoa(cmd.Process.Pid) + ".map"
			defer os.Remove(path)
			f, err := os.Open(path)
			if err != nil {
				t.Fatalf("%s wrote no perf map: %v", j.name, err)
			}
			pm, err := parsePerfMap(f, path)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			m := &profile.Mapping{ID: 1, File: path, Start: 0, Limit: ^uint64(0)}
			p := &profile.Profile{Mapping: []*profile.Mapping{m}}
			for i, e := range pm.syms {
				p.Location = append(p.Location, &profile.Location{ID: uint64(i + 1), Address: e.start + e.size/2, Mapping: m})
			}
			s := New(Options{})
			defer s.Close()
			if err := s.Symbolize(p); err != nil {
				t.Fatal(err)
			}
			named, found := 0, false
			for i, l := range p.Location {
				if len(l.Line) == 1 && l.Line[0].Function.Name == pm.syms[i].name {
					named++
				}
				if len(l.Line) == 1 && (strings.Contains(l.Line[0].Function.Name, "fib") || strings.Contains(l.Line[0].Function.Name, "py::f:")) {
					found = true
				}
			}
			t.Logf("%s: %d of %d perf map entries symbolize to their own name", j.name, named, len(pm.syms))
			if len(pm.syms) == 0 || !found || named < len(pm.syms)*95/100 {
				t.Errorf("%s: %d of %d entries named; JIT function found: %v", j.name, named, len(pm.syms), found)
			}
		})
	}
}

func globPaths(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	return m
}
