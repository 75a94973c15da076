package tracer

import (
	"bufio"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/symbolize/objfile"
	"github.com/emberprof/ember/unwind"
)

// hostileCopy writes a copy of the ELF file src to dst with its GNU build ID
// changed (so it is a binary of its own, not src's cached table) and then
// corrupted by corrupt.
func hostileCopy(t *testing.T, src, dst string, seed byte, corrupt func(b []byte, ef *elf.File)) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	if s := ef.Section(".note.gnu.build-id"); s != nil && s.Size > 16 {
		for i := s.Offset + 16; i < s.Offset+s.Size; i++ {
			b[i] ^= seed
		}
	}
	if corrupt != nil {
		corrupt(b, ef)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// startMapping starts mapexec on file and waits until it has mapped it.
func startMapping(t *testing.T, mapexec, file string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(mapexec, file)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "mapped\n" {
		t.Fatalf("mapexec %s: %q, %v", file, line, err)
	}
	return cmd
}

// entryOf waits for pid's unwind_procs entry and returns each mapping's
// flags by start address.
func entryOf(t *testing.T, tr *Tracer, pid int, within time.Duration) map[uint64]uint32 {
	t.Helper()
	var entry []byte
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err := tr.objs.UnwindProcs.Lookup(uint32(pid), &entry); err == nil {
			break
		}
	}
	if len(entry) != unwind.ProcSize {
		t.Fatalf("no unwind_procs entry for pid %d within %v", pid, within)
	}
	flags := map[uint64]uint32{}
	for i := range binary.LittleEndian.Uint32(entry) {
		e := entry[8+i*unwind.MappingSize:]
		flags[binary.LittleEndian.Uint64(e)] = binary.LittleEndian.Uint32(e[28:])
	}
	return flags
}

// TestHostileBinaryCostsItsOwnTables feeds the tracer's table builder
// hostile binaries, mapped executable by running processes beside a
// profiled workload: one whose .eh_frame is garbage (0xff, as the fuzz
// corpus's seed of FuzzBuildTable), one whose section headers lie past the
// end of the file, and one whose reading panics (a hook stands for a
// parser that does not survive it; every real parser recovers by itself).
// Each costs its own file's table only: the file's mapping is walked with
// frame pointers, the other mappings of its process get tables, the panic
// is counted once and the file is not read again for a later process, a
// panic in the worker itself is survived, and the workload beside them is
// still sampled with tables.
func TestHostileBinaryCostsItsOwnTables(t *testing.T) {
	requireBPF(t)
	dir := t.TempDir()
	chain := testutil.BuildC(t, filepath.Join(dir, "chain"), []string{"-O2", "-g", "-fomit-frame-pointer", "-Wl,--build-id=sha1"}, "unwind/chain.c")
	mapexec := testutil.BuildC(t, filepath.Join(dir, "mapexec"), []string{"-O2"}, "unwind/mapexec.c")
	garbage := hostileCopy(t, chain, filepath.Join(dir, "eh-garbage"), 0x11, func(b []byte, ef *elf.File) {
		s := ef.Section(".eh_frame")
		if s == nil {
			t.Fatal("chain has no .eh_frame")
		}
		for i := s.Offset; i < s.Offset+s.Size; i++ {
			b[i] = 0xff
		}
	})
	pastEnd := hostileCopy(t, chain, filepath.Join(dir, "shoff-past-end"), 0x22, func(b []byte, ef *elf.File) {
		binary.LittleEndian.PutUint64(b[0x28:], uint64(len(b))+4096) // e_shoff
	})
	panics := hostileCopy(t, chain, filepath.Join(dir, "panics"), 0x33, nil)

	var panicked atomic.Int32
	testHookMapping = func(m *proc.Mapping) {
		if m.Path == panics {
			panicked.Add(1)
			panic("hostile binary")
		}
	}
	var jobPanics atomic.Int32
	var panicPID atomic.Int32
	testHookJob = func(j unwindJob) {
		if !j.exit && int32(j.pid) == panicPID.Load() && jobPanics.Add(1) == 1 {
			panic("worker")
		}
	}
	defer func() { testHookMapping, testHookJob = nil, nil }()

	work := exec.Command(chain, "60")
	if err := work.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { work.Process.Kill(); work.Wait() }()
	hostile := map[string]*exec.Cmd{}
	for _, f := range []string{garbage, pastEnd, panics} {
		hostile[f] = startMapping(t, mapexec, f)
	}
	// A plain process whose first job panics in the worker itself.
	plain := startMapping(t, mapexec, chain)
	panicPID.Store(int32(plain.Process.Pid))
	pids := []int{work.Process.Pid, plain.Process.Pid}
	for _, c := range hostile {
		pids = append(pids, c.Process.Pid)
	}
	procs := proc.NewTable()
	defer procs.Close()
	tr, err := Start(Config{Frequency: 199, PIDs: pids, FollowForks: true, OnCPU: true, Unwind: UnwindTables}, procs)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.UnwindMode() != UnwindTables {
		testutil.SkipOrFail(t, "the kernel refused the table walker")
	}

	for file, c := range hostile {
		flags := entryOf(t, tr, c.Process.Pid, 15*time.Second)
		p := procs.Get(c.Process.Pid)
		tabled := 0
		for _, m := range p.Mappings {
			f, ok := flags[m.Start]
			switch {
			case !ok:
				t.Errorf("%s: mapping %s at %#x missing from the entry", file, m.Path, m.Start)
			case m.Path == file && f&unwind.MappingFramePointers == 0:
				t.Errorf("%s: the hostile file's mapping has a table", file)
			case m.Path != file && m.Inode != 0 && f&unwind.MappingFramePointers == 0:
				tabled++
			}
		}
		if tabled < 2 {
			t.Errorf("%s: %d of the process's other mappings have tables, want mapexec's and libc's", file, tabled)
		}
	}
	// The worker survived its panic (the plain process's job, which keeps
	// it on frame pointers until its next event): a process started now
	// that maps the panicking file is loaded, as the event reader would
	// have it loaded, without that file being read again.
	entryOf(t, tr, work.Process.Pid, 15*time.Second)
	for deadline := time.Now().Add(15 * time.Second); jobPanics.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	later := startMapping(t, mapexec, panics)
	if _, err := procs.Add(later.Process.Pid); err != nil {
		t.Fatal(err)
	}
	tr.unw.enqueue(uint32(later.Process.Pid), false)
	entryOf(t, tr, later.Process.Pid, 15*time.Second)

	// A panic recovered inside package unwind (ErrInternal: here a cached
	// result stands for one) costs the same and is counted the same.
	internal := hostileCopy(t, chain, filepath.Join(dir, "internal-error"), 0x44, nil)
	ef, err := elf.Open(internal)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := objfile.BuildIDs(ef)
	ef.Close()
	tr.unw.cache.Add(objfile.BuildIDKey(id), nil, fmt.Errorf("%w: a parser's panic", unwind.ErrInternal))
	third := startMapping(t, mapexec, internal)
	if _, err := procs.Add(third.Process.Pid); err != nil {
		t.Fatal(err)
	}
	tr.unw.enqueue(uint32(third.Process.Pid), false)
	flags := entryOf(t, tr, third.Process.Pid, 15*time.Second)
	for _, m := range procs.Get(third.Process.Pid).Mappings {
		if m.Path == internal && flags[m.Start]&unwind.MappingFramePointers == 0 {
			t.Errorf("the mapping of a binary whose table build panicked has a table")
		}
	}

	st, _ := tr.UnwindStats()
	t.Logf("unwind stats: %+v", st)
	if n := panicked.Load(); n != 1 {
		t.Errorf("the panicking file was read %d times, want once (then remembered as bad)", n)
	}
	if st.BadBinaries != 2 {
		t.Errorf("BadBinaries = %d, want 2 (the panic in the tracer's reading, and ErrInternal)", st.BadBinaries)
	}
	if jobPanics.Load() < 1 || st.Recovered != 1 {
		t.Errorf("worker panics: %d hooked, %d recovered, want 1 recovered", jobPanics.Load(), st.Recovered)
	}

	// The workload beside them is sampled, walked with tables.
	time.Sleep(time.Second)
	samples, err := tr.Drain()
	if err != nil {
		t.Fatal(err)
	}
	var ticks, tabled uint64
	for _, s := range samples {
		if s.PID == uint32(work.Process.Pid) {
			ticks += s.Count
			if s.UserTables {
				tabled += s.Count
			}
		}
	}
	if ticks == 0 || tabled == 0 {
		t.Errorf("the workload beside the hostile binaries: %d samples, %d walked with tables", ticks, tabled)
	}
}
