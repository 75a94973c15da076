package tracer

import (
	"encoding/binary"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emberprof/ember/bpf"
	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/unwind"
)

// stackCopyRecord builds a struct stack_copy as the BPF program writes it.
func stackCopyRecord(id uint64, pid uint32, sp uint64, stack []byte, claim uint32) []byte {
	b := make([]byte, stackCopyHeader+bpf.StackCopyBytes)
	le := binary.NativeEndian
	le.PutUint64(b[0:], id)
	le.PutUint32(b[8:], pid)
	le.PutUint32(b[12:], pid)
	le.PutUint64(b[16:], 0x401000) // pc
	le.PutUint64(b[24:], sp)
	le.PutUint32(b[48:], claim)
	copy(b[stackCopyHeader:], stack)
	return b
}

// TestParseStackCopy: a copy's header and stack are read as written, its
// memory is the copied bytes and nothing else, and a record that claims
// more stack than it holds, or is cut short, is refused without a panic.
func TestParseStackCopy(t *testing.T) {
	stack := make([]byte, 64)
	binary.LittleEndian.PutUint64(stack[8:], 0xdeadbeef)
	c, err := parseStackCopy(stackCopyRecord(7, 42, 0x7ffc0000, stack, 64))
	if err != nil {
		t.Fatal(err)
	}
	if c.id != 7 || c.pid != 42 || c.regs.PC != 0x401000 || c.regs.SP != 0x7ffc0000 || len(c.stack) != 64 {
		t.Fatalf("parsed %+v", c)
	}
	if b, err := c.read(0x7ffc0008, 8); err != nil || binary.LittleEndian.Uint64(b) != 0xdeadbeef {
		t.Errorf("read at sp+8: %x, %v", b, err)
	}
	for _, r := range []struct {
		addr uint64
		n    int
	}{{0x7ffc0000 - 8, 8}, {0x7ffc0000 + 60, 8}, {0x7ffc0000 + 64, 1}, {^uint64(0) - 2, 8}} {
		if _, err := c.read(r.addr, r.n); err == nil {
			t.Errorf("read %d bytes at %#x outside the copy: no error", r.n, r.addr)
		}
	}
	if _, err := parseStackCopy(stackCopyRecord(1, 1, 0x1000, nil, bpf.StackCopyBytes+8)); err == nil {
		t.Error("a copy claiming more than STACK_COPY_BYTES was accepted")
	}
	if _, err := parseStackCopy(stackCopyRecord(1, 1, 0x1000, nil, 64)[:stackCopyHeader+32]); err == nil {
		t.Error("a copy cut short of its claimed length was accepted")
	}
	if _, err := parseStackCopy(make([]byte, stackCopyHeader-1)); err == nil {
		t.Error("a record shorter than the header was accepted")
	}
}

// TestStackCopyNotWalkedCountedAndMarked: a copied sample whose copy was
// walked gets the walk as a table walk; one whose copy never came, or whose
// process's tables could not be loaded, is counted (in samples) and marked
// StackCopyNotWalked, never passed off as a stack.
func TestStackCopyNotWalkedCountedAndMarked(t *testing.T) {
	s := &stackCopies{
		failed:  map[uint32]bool{},
		pending: map[uint32][]stackCopy{}, walked: map[uint64]walkedCopy{}, wait: 50 * time.Millisecond,
	}
	s.cond = sync.NewCond(&s.mu)
	s.walked[1] = walkedCopy{pcs: []uint64{0x401000, 0x401234}, reason: unwind.ReasonComplete}
	s.pending[9] = []stackCopy{{id: 2, pid: 9}}
	s.store(2, walk(nil, s.pending[9][0])) // pid 9's tables failed to load
	got := s.take([]uint64{1, 2, 3})       // 3 never arrives
	var ok, lost Sample
	s.fill(&ok, got, 1, 4)
	if len(ok.User) != 2 || !ok.UserTables || ok.UserErr != 0 {
		t.Errorf("walked copy: %+v", ok)
	}
	s.fill(&lost, got, 2, 3)
	cut := map[uint64]walkedCopy{4: {pcs: []uint64{0x401000}, reason: unwind.ReasonBadTable}}
	var truncated Sample
	s.fill(&truncated, cut, 4, 6)
	if truncated.UserReason != unwind.ReasonBadTable || len(truncated.User) != 1 {
		t.Errorf("truncated walk: %+v", truncated)
	}
	if n := s.truncated[unwind.ReasonBadTable].Load(); n != 6 {
		t.Errorf("copies truncated at a bad table: %d samples, want 6", n)
	}
	var never Sample
	s.fill(&never, got, 3, 5)
	if lost.UserErr != StackCopyNotWalked || never.UserErr != StackCopyNotWalked || lost.User != nil {
		t.Errorf("copies not walked: %+v, %+v", lost, never)
	}
	if n := s.notWalked.Load(); n != 8 {
		t.Errorf("unwind_stack_copy_not_walked = %d, want 8 (3 + 5 samples)", n)
	}
	if len(s.walked) != 0 {
		t.Errorf("%d walks kept after they were taken", len(s.walked))
	}
}

// TestDrainNoWaitHoldsCopiedSamples: with DrainNoWait a drained sample whose
// copy is not walked yet is held back, not waited for, and its process's
// exit waits with it; a later drain hands it on with its walked stack, and
// one whose copy is never walked is handed on marked, once stackCopyWait
// has passed, not held for ever. A walk no drain takes is dropped.
func TestDrainNoWaitHoldsCopiedSamples(t *testing.T) {
	s := &stackCopies{
		failed:  map[uint32]bool{},
		pending: map[uint32][]stackCopy{}, walked: map[uint64]walkedCopy{}, wait: 200 * time.Millisecond,
	}
	s.cond = sync.NewCond(&s.mu)
	tr := &Tracer{cfg: Config{DrainNoWait: true}, copies: s}
	drained := []Sample{
		{PID: 7, Count: 1},
		{PID: 8, Count: 2, copies: &copyWait{user: 5, waker: -1, count: 2}},
		{PID: 9, Count: 3, copies: &copyWait{user: 6, waker: -1, count: 3}},
	}
	start := time.Now()
	out, exited := tr.settleCopies(drained, []int{7, 8}, false)
	if time.Since(start) >= s.wait {
		t.Errorf("the drain waited %v for copies", time.Since(start))
	}
	if len(out) != 1 || out[0].PID != 7 || len(tr.held) != 2 {
		t.Fatalf("handed on %+v, held %d; want pid 7's sample, 2 held", out, len(tr.held))
	}
	if len(exited) != 1 || exited[0] != 7 || len(tr.exits) != 1 || tr.exits[0] != 8 {
		t.Errorf("exited %v now, %v later; want 7 now and 8 (a sample held) later", exited, tr.exits)
	}
	s.mu.Lock()
	s.walked[5] = walkedCopy{pcs: []uint64{0x401000}, reason: unwind.ReasonComplete, at: time.Now()}
	s.walked[99] = walkedCopy{failed: true, at: time.Now().Add(-time.Minute)} // taken by no drain
	s.mu.Unlock()
	out, _ = tr.settleCopies(nil, nil, false)
	if len(out) != 1 || out[0].PID != 8 || len(out[0].User) != 1 || !out[0].UserTables || out[0].copies != nil {
		t.Fatalf("second drain handed on %+v; want pid 8 with its walked stack", out)
	}
	if _, kept := s.walked[99]; kept {
		t.Error("a walk no drain took was kept")
	}
	time.Sleep(s.wait)
	out, _ = tr.settleCopies(nil, nil, false)
	if len(out) != 1 || out[0].PID != 9 || out[0].UserErr != StackCopyNotWalked || len(tr.held) != 0 {
		t.Fatalf("after the wait: %+v, %d held; want pid 9 marked not walked, none held", out, len(tr.held))
	}
	if n := s.notWalked.Load(); n != 3 {
		t.Errorf("unwind_stack_copy_not_walked = %d, want 3", n)
	}
}

// TestOnCPUCopyBytes: an on-CPU ring holds a second of copies of every
// sample, between 2 and 8 MiB; off-CPU keeps the object's size (0).
func TestOnCPUCopyBytes(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		cpus int
		want uint32
	}{
		{Config{OnCPU: true, Frequency: 99}, 2, 2 << 20},
		{Config{OnCPU: true, Frequency: 99}, 8, 8 << 20},
		{Config{OnCPU: true, Frequency: 99}, 512, 8 << 20},
		{Config{OnCPU: true, Frequency: 199}, 2, 4 << 20},
		{Config{OnCPU: true, OffCPU: true, Frequency: 99}, 2, 0},
		{Config{OffCPU: true}, 2, 0},
	} {
		if got := onCPUCopyBytes(c.cfg, c.cpus); got != c.want {
			t.Errorf("%+v on %d CPUs: %d bytes, want %d", c.cfg, c.cpus, got, c.want)
		}
	}
}

// TestUnwindTruncatedStatNames: each reason a walk stops for names its
// kernel counter, under which the copies' walks are counted too.
func TestUnwindTruncatedStatNames(t *testing.T) {
	for r := unwind.ReasonNoMapping; r <= unwind.ReasonBadTable; r++ {
		want := "unwind_truncated_" + strings.ReplaceAll(r.String(), "-", "_")
		if got := bpf.UnwindTruncatedStat(uint8(r)); got != want {
			t.Errorf("reason %v: counter %q, want %q", r, got, want)
		}
	}
	if got := bpf.UnwindTruncatedStat(uint8(unwind.ReasonComplete)); got != "" {
		t.Errorf("a complete walk has counter %q", got)
	}
}

// TestStackCopyWalkedWithTablesNotCached: the copies of new processes are
// walked with the tables the kernel walks with even when the cache of built
// tables no longer holds them (here it keeps none): they are read back from
// the maps. Before, such a walk stopped at its first frame, "bad table" (a
// whole-system recording whose cache had evicted libc's table for larger
// ones built since).
func TestStackCopyWalkedWithTablesNotCached(t *testing.T) {
	requireBPF(t)
	bin := testutil.BuildC(t, filepath.Join(t.TempDir(), "chain"), []string{"-O2", "-g", "-fomit-frame-pointer"}, "unwind/chain.c")
	procs := proc.NewTable()
	defer procs.Close()
	tr, err := Start(Config{Frequency: 999, OnCPU: true, Unwind: UnwindTables, UnwindCacheBytes: 1}, procs)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.copies == nil {
		t.Fatal("no stack copies on a whole-system table walker")
	}
	pids := map[uint32]bool{}
	var samples []Sample
	for i := 0; i < 30 && (i < 10 || tr.copies.copies.Load() < 20); i++ {
		w := exec.Command(bin, "0.02")
		if err := w.Run(); err != nil {
			t.Fatal(err)
		}
		pids[uint32(w.Process.Pid)] = true
		out, err := tr.Drain()
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, out...)
	}
	out, err := tr.DrainAll()
	if err != nil {
		t.Fatal(err)
	}
	samples = append(samples, out...)
	var n, whole uint64
	shown := 0
	for _, s := range samples {
		if !pids[s.PID] {
			continue
		}
		n += s.Count
		// chain's user stacks: its own frames, then libc's
		// __libc_start_call_main and __libc_start_main, then _start.
		if s.UserTables && s.UserReason == unwind.ReasonComplete && len(s.User) >= 4 {
			whole += s.Count
		} else if shown++; shown <= 5 {
			t.Logf("pid %d: user stack %x, walked with tables %v, %v", s.PID, s.User, s.UserTables, s.UserReason)
		}
	}
	copies := tr.copies.copies.Load()
	t.Logf("%d runs: %d samples, %d with whole table walks; %d stack copies", len(pids), n, whole, copies)
	if copies == 0 {
		t.Fatal("no process's samples were copied: the test proves nothing")
	}
	// Other reasons stay possible: a sample in execve, its registers still
	// the parent's image (no mapping), or in the dynamic loader's first
	// instructions.
	if c := tr.copies.truncated[unwind.ReasonBadTable].Load(); c > 0 {
		t.Errorf("%d samples' copies truncated at a table the view lacks", c)
	}
	if n == 0 || float64(whole) < 0.95*float64(n) {
		t.Errorf("%d of %d samples walked whole, want 95%%", whole, n)
	}
}

// TestViewOfLoadOutlivesExit: the copies waiting for a load are walked with
// a view of the entry it wrote, built after the load returns; the process's
// exit can unload it in between (on the other worker). The view must still
// name every table the entry does. It read them from the process's current
// tables, gone by then, and each walk stopped at its first frame ("bad
// table": a process that exited right after its block, TestOffCPUBlockOnce).
func TestViewOfLoadOutlivesExit(t *testing.T) {
	tr, _, pid := traceChain(t)
	u := tr.unw
	var w *loadedEntry
	for deadline := time.Now().Add(10 * time.Second); w == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no load of pid %d wrote an entry within 10 s", pid)
		}
		u.lockPID(pid)
		u.unload(pid) // so that the load writes the entry again
		var err error
		w, err = u.load(pid)
		u.unlockPID(pid)
		if err != nil {
			t.Logf("load: %v", err)
		}
	}
	u.lockPID(pid)
	u.unload(pid) // its exit, before the waiting copies' view is built
	u.unlockPID(pid)
	m := u.viewOf(pid, w.entry, w.tables)
	n := binary.LittleEndian.Uint32(w.entry)
	tabled := 0
	for i := range n {
		e := w.entry[8+i*unwind.MappingSize:]
		id, flags := binary.LittleEndian.Uint32(e[24:]), binary.LittleEndian.Uint32(e[28:])
		if flags&unwind.MappingFramePointers != 0 {
			continue
		}
		tabled++
		m.Fill(id)
		var ti unwind.TableInfo
		off := int(id) * unwind.TableInfoSize
		if len(m.Tables) < off+unwind.TableInfoSize || ti.UnmarshalBinary(m.Tables[off:off+unwind.TableInfoSize]) != nil || ti.NumPages == 0 {
			t.Errorf("mapping %d: the view lacks table %d", i, id)
		}
	}
	if tabled < 2 {
		t.Errorf("the entry names %d tables, want the program's and libc's at least", tabled)
	}
}
