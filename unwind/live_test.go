package unwind

import (
	"bufio"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/internal/testutil"
)

// The reference unwinder is checked on live processes: the test starts a
// workload whose call chain is known, stops it with ptrace, reads its
// registers and its stack through /proc/PID/mem, and walks the stack with
// the tables of every binary mapped in it.

// symtab is a small address -> function lookup over an ELF file's symbols.
type symtab struct {
	syms []elf.Symbol
}

func loadSymtab(t testing.TB, path string) *symtab {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st symtab
	s1, _ := f.Symbols()
	s2, _ := f.DynamicSymbols()
	for _, s := range append(s1, s2...) {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 {
			st.syms = append(st.syms, s)
		}
	}
	sort.Slice(st.syms, func(i, j int) bool { return st.syms[i].Value < st.syms[j].Value })
	return &st
}

func (st *symtab) lookup(vaddr uint64) string {
	i := sort.Search(len(st.syms), func(i int) bool { return st.syms[i].Value > vaddr })
	if i == 0 {
		return "?"
	}
	s := st.syms[i-1]
	if s.Size != 0 && vaddr >= s.Value+s.Size {
		return "?"
	}
	return s.Name
}

// liveProcess is a stopped workload and what the test knows about it.
type liveProcess struct {
	pid     int
	regs    unix.PtraceRegs
	mem     *os.File
	maps    Maps
	mapping []Mapping
	paths   []string // path of each mapping
	syms    map[string]*symtab
}

func (p *liveProcess) readMem(addr uint64, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := p.mem.ReadAt(b, int64(addr)); err != nil {
		return nil, err
	}
	return b, nil
}

// symbolize names each PC as "function" using the symbols of its binary.
func (p *liveProcess) symbolize(t testing.TB, pcs []uint64) []string {
	var out []string
	for i, pc := range pcs {
		if i > 0 {
			pc-- // inside the call instruction
		}
		name := "?"
		for j, m := range p.mapping {
			if pc >= m.Start && pc < m.End {
				if p.syms[p.paths[j]] == nil {
					p.syms[p.paths[j]] = loadSymtab(t, p.paths[j])
				}
				name = p.syms[p.paths[j]].lookup(pc - m.Bias)
			}
		}
		out = append(out, name)
	}
	return out
}

// startStopped runs path with args, waits for it to print "ready", lets it
// spin, stops it with PTRACE_ATTACH and loads tables for its mappings. The
// caller must hold its OS thread locked: ptrace requests come from one thread.
func startStopped(t testing.TB, path string, args ...string) *liveProcess {
	cmd := exec.Command(path, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("workload said %q, %v", line, err)
	}
	go io.Copy(io.Discard, stdout)
	time.Sleep(20 * time.Millisecond)
	p := &liveProcess{pid: cmd.Process.Pid, syms: map[string]*symtab{}}
	if err := unix.PtraceAttach(p.pid); err != nil {
		// ptrace is refused in some containers (seccomp, no CAP_SYS_PTRACE).
		if errors.Is(err, unix.EPERM) {
			testutil.SkipOrFail(t, "PTRACE_ATTACH refused (%v): this test needs ptrace", err)
		}
		t.Fatalf("PTRACE_ATTACH: %v", err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(p.pid, &ws, 0, nil); err != nil || !ws.Stopped() {
		t.Fatalf("wait4: %v, status %v", err, ws)
	}
	t.Cleanup(func() { unix.PtraceDetach(p.pid) })
	if err := unix.PtraceGetRegs(p.pid, &p.regs); err != nil {
		t.Fatalf("PTRACE_GETREGS: %v", err)
	}
	p.mem, err = os.Open("/proc/" + strconv.Itoa(p.pid) + "/mem")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.mem.Close() })
	p.loadMappings(t)
	return p
}

// loadMappings reads /proc/PID/maps and builds a table for every executable
// file mapping, as the agent will.
func (p *liveProcess) loadMappings(t testing.TB) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]uint32{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[1][2] != 'x' || !strings.HasPrefix(f[5], "/") {
			continue
		}
		se := strings.SplitN(f[0], "-", 2)
		start, _ := strconv.ParseUint(se[0], 16, 64)
		end, _ := strconv.ParseUint(se[1], 16, 64)
		off, _ := strconv.ParseUint(f[2], 16, 64)
		ef, err := elf.Open(f[5])
		if err != nil {
			t.Fatal(err)
		}
		bias, err := Bias(ef, start, off)
		if err != nil {
			t.Fatal(err)
		}
		id, ok := ids[f[5]]
		if !ok {
			tab, err := NewTable(ef)
			if err != nil {
				t.Fatalf("%s: %v", f[5], err)
			}
			if id, err = p.maps.AddTable(tab); err != nil {
				t.Fatal(err)
			}
			ids[f[5]] = id
		}
		ef.Close()
		p.mapping = append(p.mapping, Mapping{Start: start, End: end, Bias: bias, TableID: id})
		p.paths = append(p.paths, f[5])
	}
	if err := p.maps.SetProc(uint32(p.pid), p.mapping); err != nil {
		t.Fatal(err)
	}
}

func TestUnwindLiveProcess(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("ptrace register layout used here is x86-64's")
	}
	want := []string{"hot", "level3", "level2", "level1", "main"}
	for _, name := range []string{"chain-O2-omitfp", "chain-O1-fp", "chain-O2-debugframe", "chain-O2-nopie"} {
		t.Run(name, func(t *testing.T) {
			path := buildBinary(t, name)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			p := startStopped(t, path, "spin")
			regs := regsOf(&p.regs)

			pcs, reason := Unwind(regs, p.readMem, &p.maps, uint32(p.pid))
			got := p.symbolize(t, pcs)
			t.Logf("tables:         %v (%v)", got, reason)
			if reason != ReasonComplete {
				t.Errorf("walk ended with %v, want %v", reason, ReasonComplete)
			}
			if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
				t.Errorf("chain %v, want it to start %v", got, want)
			}
			if len(got) == 0 || got[len(got)-1] != "_start" {
				t.Errorf("chain %v does not end in _start", got)
			}
			// level1's frame was stepped with the compiled DRAP expression.
			if i := slices.Index(got, "level1"); i > 0 {
				tab, err := Open(path)
				if err != nil {
					t.Fatal(err)
				}
				for j, m := range p.mapping {
					if p.paths[j] == path && pcs[i]-1 >= m.Start && pcs[i]-1 < m.End {
						if r, _ := tab.Lookup(pcs[i] - 1 - m.Bias); r.CFA != CFADerefFP || r.FP != FPAtFP {
							t.Errorf("level1's row at its call is %+v, want CFADerefFP and FPAtFP", r)
						}
					}
				}
			}

			// The same stack walked with frame pointers only (no process
			// entry: what bpf_get_stackid does) loses frames.
			fpPCs, fpReason := Unwind(regs, p.readMem, &Maps{}, uint32(p.pid))
			fpGot := p.symbolize(t, fpPCs)
			t.Logf("frame pointers: %v (%v)", fpGot, fpReason)
			lost := 0
			for _, fn := range want {
				if !slices.Contains(fpGot, fn) {
					lost++
				}
			}
			if lost == 0 {
				t.Errorf("frame-pointer walk %v found the whole chain; the test shows nothing", fpGot)
			}
			if name == "chain-O1-fp" && slices.Contains(fpGot, "level3") {
				t.Errorf("frame-pointer walk %v kept level3, the caller of the frameless leaf", fpGot)
			}
			compareWithGDB(t, p, pcs)
		})
	}
}

// TestUnwindThroughLibc stops the workload inside a qsort comparator: the
// stack crosses libc, built without frame pointers, between spin_cmp and
// main.
func TestUnwindThroughLibc(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("ptrace register layout used here is x86-64's")
	}
	path := buildBinary(t, "chain-O1-fp")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := startStopped(t, path, "spin-qsort")
	regs := regsOf(&p.regs)
	pcs, reason := Unwind(regs, p.readMem, &p.maps, uint32(p.pid))
	got := p.symbolize(t, pcs)
	t.Logf("tables:         %v (%v)", got, reason)
	if reason != ReasonComplete || len(got) < 4 || got[0] != "hot" || got[1] != "spin_cmp" || got[len(got)-1] != "_start" {
		t.Fatalf("chain %v (%v), want hot, spin_cmp, libc frames, main, ..., _start", got, reason)
	}
	i := slices.Index(got, "main")
	if i < 3 {
		t.Errorf("chain %v: want main after libc's qsort frames", got)
	}
	for j, pc := range pcs[2:max(i, 2)] {
		if !strings.Contains(p.pathOf(pc-1), "libc") {
			t.Errorf("frame %d (%s) between spin_cmp and main is not in libc", j+2, got[j+2])
		}
	}
	fpPCs, fpReason := Unwind(regs, p.readMem, &Maps{}, uint32(p.pid))
	fpGot := p.symbolize(t, fpPCs)
	t.Logf("frame pointers: %v (%v)", fpGot, fpReason)
	if slices.Contains(fpGot, "main") && slices.Contains(fpGot, "spin_cmp") {
		t.Errorf("frame-pointer walk %v crossed libc; the test shows nothing", fpGot)
	}
	compareWithGDB(t, p, pcs)
}

func (p *liveProcess) pathOf(addr uint64) string {
	for j, m := range p.mapping {
		if addr >= m.Start && addr < m.End {
			return p.paths[j]
		}
	}
	return ""
}

// TestUnwindGo walks a Go program, built with and without symbols and
// DWARF (-s -w), twice: with the table NewTable builds from its pclntab, and
// with MappingFramePointers on its mapping (how Ember walked Go binaries
// before). Go omits the frame pointer in leaf functions with no frame
// (main.hot here), so the frame-pointer walk loses the leaf's caller; the
// pclntab walk does not, stripped or not.
func TestUnwindGo(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("ptrace register layout used here is x86-64's")
	}
	full := ""
	for _, stripped := range []bool{false, true} {
		name := "gospin"
		args := []string{"build", "-o"}
		if stripped {
			name += "-stripped"
		}
		path := filepath.Join(buildDir, name)
		args = append(args, path)
		if stripped {
			args = append(args, "-ldflags=-s -w")
		}
		if out, err := exec.Command("go", append(args, "./testdata/gospin/main.go")...).CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		if !stripped {
			full = path
		}
		t.Run(name, func(t *testing.T) { unwindGo(t, path, full) })
	}
}

// unwindGo walks the program at path, named with the symbols of full (the
// same code, unstripped).
func unwindGo(t *testing.T, path, full string) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Without asynchronous preemption the loop in main.hot, which makes no
	// call, never leaves it: otherwise the runtime may preempt it and the
	// locked thread may be stopped handing off its P (seen once in CI-like
	// runs: runtime.futex <- ... <- runtime.asyncPreempt2).
	t.Setenv("GODEBUG", "asyncpreemptoff=1")
	p := startStopped(t, path, "spin")
	p.syms[path] = loadSymtab(t, full)
	regs := regsOf(&p.regs)
	want := []string{"main.hot", "main.level2", "main.level1", "main.main", "runtime.main", "runtime.goexit.abi0"}

	pcs, reason := Unwind(regs, p.readMem, &p.maps, uint32(p.pid))
	got := p.symbolize(t, pcs)
	t.Logf("tables (pclntab): %v (%v)", got, reason)
	// runtime.goexit is a TOPFRAME function: the walk ends there, complete.
	if !slices.Equal(got, want) || reason != ReasonComplete {
		t.Errorf("table walk %v (%v), want %v (complete)", got, reason, want)
	}

	fpMappings := slices.Clone(p.mapping)
	for i := range fpMappings {
		f, err := elf.Open(p.paths[i])
		if err != nil {
			t.Fatal(err)
		}
		if IsGo(f) {
			fpMappings[i].Flags |= MappingFramePointers
		}
		f.Close()
	}
	if err := p.maps.SetProc(uint32(p.pid), fpMappings); err != nil {
		t.Fatal(err)
	}
	pcs, reason = Unwind(regs, p.readMem, &p.maps, uint32(p.pid))
	got = p.symbolize(t, pcs)
	t.Logf("frame pointers:   %v (%v)", got, reason)
	wantFP := slices.Delete(slices.Clone(want), 1, 2) // main.level2, the caller of the frameless leaf
	if !slices.Equal(got, wantFP) || reason != ReasonComplete {
		t.Errorf("frame-pointer walk %v (%v), want %v (complete)", got, reason, wantFP)
	}
}

var reGDBFrame = regexp.MustCompile(`^#\d+\s+0x([0-9a-f]+) in (\S+)`)

// gdbBacktrace hands the stopped process over to gdb (detaching with the
// process left stopped) and returns the PC of every physical frame of
// gdb's backtrace, past main: a second, independent unwinder to compare
// with. Inlined frames, which gdb prints without an address, are skipped.
func (p *liveProcess) gdbBacktrace(t testing.TB) (pcs []uint64, names []string) {
	t.Helper()
	if _, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(p.pid), 0, uintptr(unix.SIGSTOP), 0, 0); errno != 0 {
		t.Fatalf("PTRACE_DETACH: %v", errno)
	}
	out, err := exec.Command("gdb", "-q", "-nx", "-batch", "-p", strconv.Itoa(p.pid),
		"-ex", "set backtrace past-main on", "-ex", "bt").CombinedOutput()
	if err != nil {
		t.Fatalf("gdb (Debian package gdb): %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if m := reGDBFrame.FindStringSubmatch(line); m != nil {
			pc, _ := strconv.ParseUint(m[1], 16, 64)
			pcs = append(pcs, pc)
			names = append(names, m[2])
		}
	}
	if len(pcs) == 0 {
		t.Fatalf("no frames in gdb's output:\n%s", out)
	}
	return pcs, names
}

// compareWithGDB checks that the table walk found exactly the frames gdb
// finds. gdb's frame 0 is where the process is now: still in the leaf, or,
// when it ran between our detach and its SIGSTOP (seen on a busy machine),
// back in the leaf's caller, whose return address our walk found as its
// second frame; every frame above must be ours exactly.
func compareWithGDB(t *testing.T, p *liveProcess, pcs []uint64) {
	t.Helper()
	gdbPCs, gdbNames := p.gdbBacktrace(t)
	t.Logf("gdb:            %v", gdbNames)
	switch {
	case len(gdbPCs) == len(pcs) && slices.Equal(gdbPCs[1:], pcs[1:]):
	case len(pcs) > 2 && len(gdbPCs) == len(pcs)-1 && slices.Equal(gdbPCs[1:], pcs[2:]):
		t.Logf("the process left its leaf before gdb stopped it: compared the frames above")
	default:
		t.Errorf("table walk %#x, gdb %#x", pcs, gdbPCs)
	}
}
