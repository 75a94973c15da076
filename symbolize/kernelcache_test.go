package symbolize

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/internal/testutil"
)

// kallsymsLine is a text line of the running kernel's kallsyms.
type kallsymsLine struct {
	addr      uint64
	name, mod string // mod: "" for the core kernel
}

// kallsymsText reads the running kernel's text lines, in file order.
func kallsymsText(t testing.TB) []kallsymsLine {
	t.Helper()
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		testutil.SkipOrFail(t, "no /proc/kallsyms: %v", err)
	}
	defer f.Close()
	var out []kallsymsLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 3 || len(fl[1]) != 1 || !isText(fl[1][0]) {
			continue
		}
		a, _ := strconv.ParseUint(fl[0], 16, 64)
		l := kallsymsLine{addr: a, name: fl[2]}
		if len(fl) > 3 {
			l.mod = fl[3]
		}
		out = append(out, l)
	}
	if len(out) == 0 || out[0].addr == 0 {
		testutil.SkipOrFail(t, "kallsyms shows no text addresses (kptr_restrict, not root?)")
	}
	return out
}

// coreAddrs returns addresses in core kernel text: function starts, the byte
// after, and midway to the next symbol, of every step-th core symbol; and the
// last core text symbol's address, above which the table answers nothing.
func coreAddrs(lines []kallsymsLine, step int) (addrs []uint64, last uint64) {
	var core []uint64
	for _, l := range lines {
		if l.mod == "" {
			core = append(core, l.addr)
		}
	}
	for i := 0; i+1 < len(core); i += step {
		addrs = append(addrs, core[i], core[i]+1, core[i]+(core[i+1]-core[i])/2)
	}
	slices.Sort(addrs)
	return slices.Compact(addrs), core[len(core)-1]
}

// kernelProfile is a profile of the kernel's addresses.
func kernelProfile(addrs []uint64) *profile.Profile {
	m := &profile.Mapping{ID: 1, File: pprof.KernelFile}
	p := &profile.Profile{Mapping: []*profile.Mapping{m}}
	for i, a := range addrs {
		p.Location = append(p.Location, &profile.Location{ID: uint64(i + 1), Address: a, Mapping: m})
	}
	return p
}

// symbolizeKernelAddrs symbolizes addrs with a new Symbolizer and returns
// the frames and the number of kallsyms passes.
func symbolizeKernelAddrs(t testing.TB, addrs []uint64) ([]Frame, int64) {
	t.Helper()
	s := New(Options{})
	defer s.Close()
	p := kernelProfile(addrs)
	if err := s.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	out := make([]Frame, len(addrs))
	for i, l := range p.Location {
		if len(l.Line) == 1 {
			out[i] = Frame{Function: l.Line[0].Function.Name, File: l.Line[0].Function.Filename}
		}
	}
	return out, s.kallsymsPasses.Load()
}

// kallsymsAnswers is what one pass over the running kernel's kallsyms
// answers for addrs (sorted, distinct).
func kallsymsAnswers(t testing.TB, addrs []uint64) []Frame {
	t.Helper()
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	frames, _, _, err := resolveKallsyms(f, "/proc/kallsyms", addrs)
	if err != nil {
		t.Fatal(err)
	}
	return frames
}

// loadBPFProgram loads a program that does nothing, for a [bpf] symbol in
// kallsyms (net.core.bpf_jit_kallsyms), and returns its tag.
func loadBPFProgram(t *testing.T) string {
	t.Helper()
	// A kernel that does not list BPF programs in kallsyms is told to for
	// the test (root can), and told back after.
	const jitKallsyms = "/proc/sys/net/core/bpf_jit_kallsyms"
	if b, err := os.ReadFile(jitKallsyms); err == nil && strings.TrimSpace(string(b)) == "0" {
		if err := os.WriteFile(jitKallsyms, []byte("1"), 0); err == nil {
			t.Cleanup(func() { os.WriteFile(jitKallsyms, b, 0) })
		}
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "ember_ksym", Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		testutil.SkipOrFail(t, "loading a BPF program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	return info.Tag
}

// TestKernelCache: with a kernel directory, the first Symbolizer of a boot
// reads kallsyms once and writes the table; a second one answers core kernel
// addresses from it with no pass, exactly as a pass answers them; and
// module text (here a BPF program's), or core text above its last symbol,
// still needs a pass.
func TestKernelCache(t *testing.T) {
	tag := loadBPFProgram(t)
	lines := kallsymsText(t)
	addrs, last := coreAddrs(lines, 37)
	var mod uint64
	var modLine kallsymsLine
	for _, l := range lines {
		if l.mod != "" && (strings.Contains(l.name, tag) || l.mod != "[bpf]" && mod == 0) {
			mod, modLine = l.addr+1, l
		}
	}
	dir := filepath.Join(t.TempDir(), "kernel")
	SetKernelCacheDir(dir)
	defer SetKernelCacheDir("")

	want := kallsymsAnswers(t, addrs)
	first, passes := symbolizeKernelAddrs(t, addrs)
	if passes != 1 || !slices.Equal(first, want) {
		t.Fatalf("first run: %d passes, answers equal to a pass's: %v", passes, slices.Equal(first, want))
	}
	boot, _ := bootID()
	if st, err := os.Stat(filepath.Join(dir, boot)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("table for boot %s: %v %v", boot, st, err)
	}
	second, passes := symbolizeKernelAddrs(t, addrs)
	if passes != 0 {
		t.Errorf("second run: %d passes over kallsyms for %d core kernel addresses, want 0", passes, len(addrs))
	}
	for i := range addrs {
		if second[i] != want[i] {
			t.Fatalf("%#x: %+v from the table, %+v from kallsyms", addrs[i], second[i], want[i])
		}
	}
	t.Logf("%d core kernel addresses, %d text symbols, answered from the table", len(addrs), len(lines))

	if _, passes := symbolizeKernelAddrs(t, []uint64{addrs[0], last}); passes != 1 {
		t.Errorf("the last core text symbol %#x: %d passes, want 1", last, passes)
	}
	if mod == 0 {
		testutil.SkipOrFail(t, "no module or BPF program text in kallsyms (net.core.bpf_jit_kallsyms=0?)")
	}
	got, passes := symbolizeKernelAddrs(t, []uint64{addrs[0], mod})
	if passes != 1 || got[1].Function != modLine.name || got[1].File != modLine.mod || got[0] != want[0] {
		t.Errorf("%s %s: %+v after %d passes", modLine.name, modLine.mod, got, passes)
	}
}

// TestKernelCacheRefused: a table of another boot, of another kernel (its
// first symbol differs), cut short, or writable by others is not used but
// written anew; and a reader that sees kallsyms's addresses as zeros gets the
// pass's error, not the table's addresses.
func TestKernelCacheRefused(t *testing.T) {
	addrs, _ := coreAddrs(kallsymsText(t), 997)
	want := kallsymsAnswers(t, addrs)
	dir := filepath.Join(t.TempDir(), "kernel")
	SetKernelCacheDir(dir)
	defer SetKernelCacheDir("")
	const boot1, boot2 = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
	idFile := filepath.Join(t.TempDir(), "boot_id")
	defer func(old string) { bootIDPath = old }(bootIDPath)
	bootIDPath = idFile
	setBoot := func(id string) {
		if err := os.WriteFile(idFile, []byte(id+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	table := func(id string) string { return filepath.Join(dir, id) }
	for _, c := range []struct {
		what   string
		boot   string
		spoil  func()
		passes int64
	}{
		{"first run", boot1, nil, 1},
		{"second run", boot1, nil, 0},
		{"another boot's table", boot2, func() { os.Rename(table(boot1), table(boot2)) }, 1},
		{"rewritten for this boot", boot2, nil, 0},
		{"cut short", boot2, func() {
			st, _ := os.Stat(table(boot2))
			os.Truncate(table(boot2), st.Size()-1)
		}, 1},
		{"others may write it", boot2, func() { os.Chmod(table(boot2), 0o666) }, 1},
		{"another kernel's", boot2, func() {
			b, _ := os.ReadFile(table(boot2))
			b[kernelHeaderSize] ^= 1 // the first symbol's name
			os.WriteFile(table(boot2), b, 0o600)
		}, 1},
		{"no magic", boot2, func() { os.WriteFile(table(boot2), []byte("EMBKSYM0"), 0o600) }, 1},
		{"after all that", boot2, nil, 0},
	} {
		setBoot(c.boot)
		if c.spoil != nil {
			c.spoil()
		}
		got, passes := symbolizeKernelAddrs(t, addrs)
		if passes != c.passes || !slices.Equal(got, want) {
			t.Errorf("%s: %d passes (want %d), answers equal to a pass's: %v", c.what, passes, c.passes, slices.Equal(got, want))
		}
	}

	// Hidden addresses: a kallsyms that shows zeros, as the running
	// kernel's, with this boot's table beside it.
	hidden := filepath.Join(t.TempDir(), "kallsyms")
	os.WriteFile(hidden, []byte("0000000000000000 T _stext\n0000000000000000 t schedule\n"), 0o644)
	defer func(old string) { procKallsyms = old }(procKallsyms)
	procKallsyms = hidden
	s := New(Options{KallsymsPath: hidden})
	defer s.Close()
	p := kernelProfile(addrs)
	if err := s.Symbolize(p); err == nil || !strings.Contains(err.Error(), "all addresses are zero") {
		t.Errorf("hidden kallsyms: %v", err)
	}
	for _, l := range p.Location {
		if len(l.Line) != 0 {
			t.Fatalf("hidden kallsyms: %#x named %s", l.Address, l.Line[0].Function.Name)
		}
	}
}

// TestCoreTextBuild: a table is written only from a kallsyms whose core text
// comes first and in order, with no other text among it; what it answers is
// what a pass answers (the last name at one address; data symbols and the
// gap up to the next text symbol included), and nothing at or above its last
// symbol or below its first.
func TestCoreTextBuild(t *testing.T) {
	good := "0000000000001000 A percpu_var\n" +
		"ffffffff81000000 T first_alias\n" +
		"ffffffff81000000 T _stext\n" +
		"ffffffff81000100 T alpha\n" +
		"ffffffff81000180 d some_data\n" +
		"ffffffff81000200 t beta\n" +
		"ffffffff81000200 t beta_alias\n" +
		"ffffffff81000300 T _etext\n" +
		"ffffffff81800000 T _sinittext\n" +
		"ffffffff81800100 T _einittext\n" +
		"ffffffffc0000000 t mod_fn\t[mod]\n" +
		"ffffffff80000000 t low_fn\t[lowmod]\n"
	for _, c := range []struct {
		what, in string
		ok       bool
	}{
		{"good", good, true},
		{"out of order", strings.Replace(good, "ffffffff81000200 t beta\n", "ffffffff81000050 t beta\n", 1), false},
		{"module text inside", strings.Replace(good, "ffffffffc0000000 t mod_fn", "ffffffff81000400 t mod_fn", 1), false},
		{"core text after a module's", good + "ffffffff81900000 T late\n", false},
		{"one symbol", "ffffffff81000000 T _stext\n", false},
	} {
		dir := t.TempDir()
		const boot = "00000000-0000-4000-8000-000000000003"
		addrs := []uint64{0xffffffff80000001, 0xffffffff81000000, 0xffffffff81000001, 0xffffffff810001ff, 0xffffffff81000201,
			0xffffffff81000300, 0xffffffff81000400, 0xffffffff81800050, 0xffffffff81800100, 0xffffffffc0000001}
		b := newCoreTextBuild()
		want, _, wantSpans, err := resolveKallsymsBuild(strings.NewReader(c.in), "test", addrs, b)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.write(dir, boot); (err == nil) != c.ok {
			t.Errorf("%s: written: %v", c.what, err)
			continue
		}
		if !c.ok {
			continue
		}
		first, _, shown := kallsymsHead(strings.NewReader(c.in))
		if !shown || first != (textSym{0xffffffff81000000, "first_alias"}) {
			t.Fatalf("%s: first text symbol %+v %v", c.what, first, shown)
		}
		tab, err := openKernelTable(dir, boot, first)
		if err != nil {
			t.Fatal(err)
		}
		for i, a := range addrs {
			f, s, ok := tab.lookup(a)
			inside := a >= 0xffffffff81000000 && a < 0xffffffff81800100
			if ok != inside || ok && (f != want[i] || s != wantSpans[i]) {
				t.Errorf("%s: %#x: %+v %#x %v; a pass: %+v %#x", c.what, a, f, s, ok, want[i], wantSpans[i])
			}
		}
		tab.close()
	}
}

// BenchmarkKernelCache symbolizes 2,000 core kernel addresses (a busy
// profile's worth) with a new Symbolizer each time: by a pass over the
// running kernel's kallsyms (pass), by a pass that also writes the table
// (build: a boot's first run), and from this boot's table (table);
// x-less-cpu is the plain pass's CPU time per op over the mode's.
func BenchmarkKernelCache(b *testing.B) {
	lines := kallsymsText(b)
	addrs, _ := coreAddrs(lines, len(lines)/700)
	dir := filepath.Join(b.TempDir(), "kernel")
	var cpu [3]float64
	for i, mode := range []string{"pass", "build", "table"} {
		b.Run(mode, func(b *testing.B) {
			if mode != "pass" {
				SetKernelCacheDir(dir)
				defer SetKernelCacheDir("")
				symbolizeKernelAddrs(b, addrs) // the first run of the boot writes it
			}
			boot, _ := bootID()
			b.ReportAllocs()
			cpu0 := processCPU()
			var passes int64
			for b.Loop() {
				if mode == "build" {
					os.Remove(filepath.Join(dir, boot)) // each a boot's first run
				}
				_, n := symbolizeKernelAddrs(b, addrs)
				passes += n
			}
			cpu[i] = float64(processCPU()-cpu0) / float64(b.N) / 1e6
			b.ReportMetric(cpu[i], "cpu-ms/op")
			b.ReportMetric(float64(passes)/float64(b.N), "passes/op")
			b.ReportMetric(float64(len(addrs)), "addrs")
			if i > 0 && cpu[i] > 0 && cpu[0] > 0 {
				// The plain pass's CPU time over this mode's, measured in
				// this run.
				b.ReportMetric(cpu[0]/cpu[i], "x-less-cpu")
			}
		})
	}
}
