package symbolize

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/internal/testutil"
)

func TestSymbolizeKernel(t *testing.T) {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		testutil.SkipOrFail(t, "no /proc/kallsyms: %v", err)
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
		testutil.SkipOrFail(t, "kallsyms shows no address for schedule (kptr_restrict, not root?)")
	}
	m := &profile.Mapping{ID: 1, File: pprof.KernelFile}
	p := &profile.Profile{Mapping: []*profile.Mapping{m}, Location: []*profile.Location{{ID: 1, Address: sched + 1, Mapping: m}}}
	if mod != 0 {
		p.Location = append(p.Location, &profile.Location{ID: 2, Address: mod, Mapping: m})
	}
	s := New(Options{})
	defer s.Close()
	if err := s.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	if l := p.Location[0].Line; len(l) != 1 || l[0].Function.Name != "schedule" || l[0].Function.Filename != pprof.KernelFile {
		t.Errorf("schedule+1: %+v", l)
	}
	if mod != 0 {
		if l := p.Location[1].Line; len(l) != 1 || l[0].Function.Name != modSym || l[0].Function.Filename != modName {
			t.Errorf("module symbol %s %s: got %+v", modSym, modName, l[0].Function)
		}
	}
}

func TestResolveKallsyms(t *testing.T) {
	// Modules after the core kernel and out of order, as in the real file;
	// two symbols at one address (the later one wins).
	in := "0000000000000000 A fixed_percpu_data\n" +
		"ffffffff81000000 T _text\n" +
		"ffffffff81001000 t do_one_initcall\n" +
		"ffffffff81001000 t do_one_initcall_alias\n" +
		"ffffffff81002000 D some_data\n" +
		"ffffffffc0001000 t helper_fn\t[nf_tables]\n" +
		"ffffffffc0000000 T init_fn\t[nf_tables]\n" +
		"ffffffffc0002000 t other_fn\t[xfs]\n"
	cases := []struct {
		addr      uint64
		name, mod string
	}{
		{0x1000, "", ""}, // below every symbol
		{0xffffffff81000010, "_text", pprof.KernelFile},
		{0xffffffff81000011, "_text", pprof.KernelFile},
		{0xffffffff81001fff, "do_one_initcall_alias", pprof.KernelFile},
		{0xffffffff81002000, "do_one_initcall_alias", pprof.KernelFile}, // data symbols are not text
		{0xffffffffc0000005, "init_fn", "[nf_tables]"},
		{0xffffffffc0001005, "helper_fn", "[nf_tables]"},
		{0xffffffffc0002000, "other_fn", "[xfs]"},
	}
	var addrs []uint64
	for _, c := range cases {
		addrs = append(addrs, c.addr)
	}
	frames, ok, _, err := resolveKallsyms(strings.NewReader(in), "test", addrs)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		if ok[i] != (c.name != "") || frames[i].Function != c.name || ok[i] && frames[i].File != c.mod {
			t.Errorf("%#x: %+v %v, want %q %q", c.addr, frames[i], ok[i], c.name, c.mod)
		}
	}
	if _, _, _, err := resolveKallsyms(strings.NewReader("0000000000000000 T _text\n"), "zeros", addrs); err == nil {
		t.Error("all-zero kallsyms accepted")
	}
}

// The running kernel's whole table, against an oracle built here: every
// text symbol's address, the byte after it and an address between symbols
// resolve as a sorted table would resolve them (the nearest symbol at or
// below, the last in the file among those at one address), with its module.
func TestResolveKallsymsWhole(t *testing.T) {
	b, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		testutil.SkipOrFail(t, "no /proc/kallsyms: %v", err)
	}
	type sym struct {
		addr      uint64
		name, mod string
	}
	var syms []sym
	for _, line := range strings.Split(string(b), "\n") {
		fl := strings.Fields(line)
		if len(fl) < 3 || len(fl[1]) != 1 || !strings.Contains("tTwW", fl[1]) {
			continue
		}
		a, _ := strconv.ParseUint(fl[0], 16, 64)
		if a == 0 {
			continue
		}
		mod := pprof.KernelFile
		if len(fl) == 4 {
			mod = fl[3]
		}
		syms = append(syms, sym{a, fl[2], mod})
	}
	if len(syms) == 0 {
		testutil.SkipOrFail(t, "no text symbols with addresses in /proc/kallsyms (not root?)")
	}
	slices.SortStableFunc(syms, func(a, b sym) int { return cmpU64(a.addr, b.addr) })
	var addrs []uint64
	for i, s := range syms {
		addrs = append(addrs, s.addr, s.addr+1)
		if i+1 < len(syms) && syms[i+1].addr > s.addr+2 {
			addrs = append(addrs, s.addr+(syms[i+1].addr-s.addr)/2)
		}
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	frames, ok, spans, err := resolveKallsyms(strings.NewReader(string(b)), "/proc/kallsyms", addrs)
	if err != nil {
		t.Fatal(err)
	}
	// oracle answers a from the stably sorted table: the last symbol at the
	// highest address at or below it, and the next address above it.
	oracle := func(a uint64) (sym, uint64) {
		j, _ := slices.BinarySearchFunc(syms, a+1, func(s sym, a uint64) int { return cmpU64(s.addr, a) })
		var next uint64
		if j < len(syms) {
			next = syms[j].addr
		}
		return syms[j-1], next // addrs are all at or above the lowest symbol
	}
	bad, badSpans, withSpan := 0, 0, 0
	for i, a := range addrs {
		want, next := oracle(a)
		if !ok[i] || frames[i].Function != truncate(want.name, maxNameLen) || frames[i].File != want.mod {
			if bad++; bad <= 5 {
				t.Errorf("%#x: %+v %v, want %s %s", a, frames[i], ok[i], want.name, want.mod)
			}
		}
		// A span is given exactly where the answer and the next symbol
		// are both of the core kernel, and is [answer, next symbol).
		var wantSpan span
		if want.mod == pprof.KernelFile && next != 0 {
			if n, _ := oracle(next); n.mod == pprof.KernelFile {
				wantSpan = span{want.addr, next}
			}
		}
		if spans[i] != wantSpan {
			if badSpans++; badSpans <= 5 {
				t.Errorf("%#x: span %#x, want %#x", a, spans[i], wantSpan)
			}
		}
		if spans[i].end != 0 {
			withSpan++
		}
	}
	t.Logf("%d text symbols, %d addresses resolved, %d wrong; %d with a span of core kernel text, %d spans wrong",
		len(syms), len(addrs), bad, withSpan, badSpans)
	if withSpan < len(addrs)/2 {
		t.Errorf("only %d of %d addresses have a span", withSpan, len(addrs))
	}
}

// BenchmarkResolveKallsyms resolves 2,000 kernel addresses (a busy
// profile's worth) against the running kernel's table.
func BenchmarkResolveKallsyms(b *testing.B) {
	data, err := os.ReadFile("/proc/kallsyms")
	if err != nil {
		b.Skip(err)
	}
	var addrs []uint64
	for i, line := range strings.Split(string(data), "\n") {
		if fl := strings.Fields(line); i%61 == 0 && len(fl) >= 3 && strings.Contains("tT", fl[1]) {
			a, _ := strconv.ParseUint(fl[0], 16, 64)
			addrs = append(addrs, a+4)
		}
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		if _, _, _, err := resolveKallsyms(strings.NewReader(string(data)), "kallsyms", addrs); err != nil {
			b.Fatal(err)
		}
	}
	// CPU time beside wall time: on a shared machine the wall time of a
	// pass moves with the load, its CPU time much less.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
	b.ReportMetric(float64(len(addrs)), "addrs")
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
		testutil.SkipOrFail(t, "neither python >= 3.12 nor node is installed (make deps installs both)")
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

// TestKernelSpansSparePasses checks that kernel addresses in core kernel
// functions answered before need no kallsyms pass, and that module text,
// which can be unloaded and its addresses reused, is read again each time.
func TestKernelSpansSparePasses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kallsyms")
	write := func(module string) {
		t.Helper()
		table := "ffffffff80000000 t low_fn\t[lowmod]\n" + // module text below the kernel's (arm64 can place it so)
			"ffffffff81000000 T _stext\n" +
			"ffffffff81000100 T alpha\n" +
			"ffffffff81000180 d some_data\n" +
			"ffffffff81000200 t beta\n" +
			"ffffffff81000300 T gamma\n" +
			"ffffffffc0000000 t " + module + "_fn\t[" + module + "]\n" +
			"ffffffffc0000100 t " + module + "_fn2\t[" + module + "]\n"
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("mymod")
	s := New(Options{KallsymsPath: path})
	defer s.Close()
	for _, c := range []struct {
		addr   uint64
		want   string
		file   string
		passes int64 // passes so far, after this address
		module string
	}{
		{0xffffffff81000105, "alpha", pprof.KernelFile, 1, ""},
		{0xffffffff81000210, "beta", pprof.KernelFile, 2, ""},
		{0xffffffff81000120, "alpha", pprof.KernelFile, 2, ""}, // same function: no pass
		{0xffffffff810001ff, "alpha", pprof.KernelFile, 2, ""}, // data symbols do not end text
		{0xffffffff81000200, "beta", pprof.KernelFile, 2, ""},
		{0xffffffff810002ff, "beta", pprof.KernelFile, 2, ""},
		{0xffffffff81000301, "gamma", pprof.KernelFile, 3, ""}, // followed by module text: not kept
		{0xffffffff81000302, "gamma", pprof.KernelFile, 4, ""},
		{0xffffffffc0000001, "mymod_fn", "[mymod]", 5, ""},
		{0xffffffffc0000001, "other_fn", "[other]", 6, "other"}, // unloaded, another in its place
		{0xffffffff80000001, "low_fn", "[lowmod]", 7, ""},       // module text followed by the kernel's
		{0xffffffff80000002, "low_fn", "[lowmod]", 8, ""},
	} {
		if c.module != "" {
			write(c.module)
		}
		m := &profile.Mapping{ID: 1, File: pprof.KernelFile}
		p := &profile.Profile{Mapping: []*profile.Mapping{m}, Location: []*profile.Location{{ID: 1, Address: c.addr, Mapping: m}}}
		if err := s.Symbolize(p); err != nil {
			t.Fatal(err)
		}
		if l := p.Location[0].Line; len(l) != 1 || l[0].Function.Name != c.want || l[0].Function.Filename != c.file {
			t.Errorf("%#x: %+v, want %s in %s", c.addr, l, c.want, c.file)
		}
		if got := s.kallsymsPasses.Load(); got != c.passes {
			t.Errorf("%#x: %d kallsyms passes so far, want %d", c.addr, got, c.passes)
		}
	}
}

// processCPU is this process's user+system time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
