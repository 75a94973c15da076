package tracer

// Copies of user stacks (bpf/stackcopy.bpf.h): a process's first samples,
// taken before its unwind tables are in the kernel, carry a copy of the
// sampled thread's user registers and stack instead of a frame-pointer walk.
// This walks each copy with the same tables, in Go (unwind.Unwind), as soon
// as the unwinder has loaded them, and the drain takes the walked stacks
// from here, so a 50 ms program built without frame pointers is walked from
// its first sample as a long-running one is. As perf does with mmap records,
// the process's mappings are read and its files held (proc.Table) while it
// lives: the on-CPU program and the off-CPU block's switch-out note a new
// process to user space at once.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/emberprof/ember/bpf"
	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/unwind"
)

// StackCopyNotWalked is the error code (Sample.UserErr) of a user stack the
// kernel copied but user space could not walk: the process was gone before
// its mappings were read, or its tables could not be loaded. It is no
// errno, as StackLookupFailed.
const StackCopyNotWalked int64 = -4097

// stackCopyWait bounds how long a drain waits for copies taken before its
// flip to be walked (their tables being built: a large binary's take
// hundreds of milliseconds the first time).
const stackCopyWait = 3 * time.Second

// stackCopyHeader is the size of struct stack_copy before its stack bytes.
const stackCopyHeader = 8 + 4 + 4 + 4*8 + 4 + 4

// stackCopy is one struct stack_copy.
type stackCopy struct {
	id       uint64
	pid, tid uint32
	regs     unwind.Regs
	sp       uint64
	stack    []byte
	arrived  time.Time // when it was read off the ring
}

func parseStackCopy(b []byte) (stackCopy, error) {
	if len(b) < stackCopyHeader {
		return stackCopy{}, fmt.Errorf("stack copy of %d bytes, want at least %d", len(b), stackCopyHeader)
	}
	le := binary.NativeEndian
	c := stackCopy{id: le.Uint64(b[0:]), pid: le.Uint32(b[8:]), tid: le.Uint32(b[12:])}
	c.regs = unwind.Regs{PC: le.Uint64(b[16:]), SP: le.Uint64(b[24:]), FP: le.Uint64(b[32:]), LR: le.Uint64(b[40:])}
	c.sp = c.regs.SP
	n := int(le.Uint32(b[48:]))
	if n > bpf.StackCopyBytes || stackCopyHeader+n > len(b) {
		return stackCopy{}, fmt.Errorf("stack copy claims %d bytes of stack, has %d", n, len(b)-stackCopyHeader)
	}
	c.stack = b[stackCopyHeader : stackCopyHeader+n]
	return c, nil
}

// read is the walk's memory: the copied bytes, nothing else.
func (c *stackCopy) read(addr uint64, n int) ([]byte, error) {
	if addr < c.sp || addr-c.sp > uint64(len(c.stack)) || uint64(len(c.stack))-(addr-c.sp) < uint64(n) {
		return nil, errors.New("outside the copied stack")
	}
	off := addr - c.sp
	return c.stack[off : off+uint64(n)], nil
}

// walkedCopy is a copy's walk: its PCs, why it stopped, or that it could
// not be walked.
type walkedCopy struct {
	pcs    []uint64
	reason unwind.Reason
	failed bool
	at     time.Time // when it was stored: a walk no drain took is dropped (takeUntil)
}

// stackCopies walks the copies of one tracer.
type stackCopies struct {
	rb    *ringbuf.Reader
	unw   *unwinder
	procs *proc.Table
	wg    sync.WaitGroup

	mu      sync.Mutex
	cond    *sync.Cond
	failed  map[uint32]bool        // pid -> its tables could not be loaded
	pending map[uint32][]stackCopy // pid -> copies waiting for its tables
	walked  map[uint64]walkedCopy  // copy id -> its walk, until drained

	wait time.Duration // stackCopyWait; shorter in tests
	// flushMmaps, if set, applies the mmap records written so far
	// (mmapRecorder.flush).
	flushMmaps        func()
	copies, notWalked atomic.Uint64
	// truncated counts, in samples, the copies whose walk stopped early,
	// by unwind.Reason: the kernel's walks are counted by its stats.
	truncated [bpf.NumUnwindReasons]atomic.Uint64
}

func newStackCopies(t *Tracer) (*stackCopies, error) {
	rb, err := ringbuf.NewReader(t.objs.StackCopies)
	if err != nil {
		return nil, fmt.Errorf("open the stack copy ring buffer: %w", err)
	}
	s := &stackCopies{
		rb: rb, unw: t.unw, procs: t.procs,
		failed:  map[uint32]bool{},
		pending: map[uint32][]stackCopy{},
		walked:  map[uint64]walkedCopy{},
		wait:    stackCopyWait,
	}
	s.cond = sync.NewCond(&s.mu)
	t.unw.loaded = s.loaded
	s.wg.Add(1)
	go s.read()
	return s, nil
}

func (s *stackCopies) close() {
	s.rb.Close()
	s.wg.Wait()
}

// read takes copies off the ring buffer: walked at once where the process's
// tables are loaded, else kept until they are (loaded).
//
// Records are read into one buffer, reused: a copy is a fixed 8 KiB record
// whatever the stack it holds, and a record allocated per Read was kept
// whole by every copy waiting for its tables (cilium's readRecord held
// 8.8 MiB at the agent's hour soak's peak over its 128 MiB limit). A
// waiting copy keeps a copy of its stack bytes only.
func (s *stackCopies) read() {
	defer s.wg.Done()
	var rec ringbuf.Record
	for {
		err := s.rb.ReadInto(&rec)
		if err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			slog.Debug("read stack copies", "err", err)
			continue
		}
		c, err := parseStackCopy(rec.RawSample)
		if err != nil {
			slog.Debug("stack copy", "err", err)
			continue
		}
		s.copies.Add(1)
		// The mappings made before the copy was taken are recorded before
		// it (mmaps.go): put them in the table now, so that the copy is
		// walked with tables that cover them.
		if s.flushMmaps != nil {
			s.flushMmaps()
		}
		// Without its records (a process older than Ember), its mappings
		// are read now, while it lives, and its files held.
		p := s.procs.Get(int(c.pid))
		if p == nil {
			if p, err = s.procs.Add(int(c.pid)); err != nil {
				slog.Debug("read process of a stack copy", "pid", c.pid, "err", err)
			}
		}
		c.arrived = time.Now()
		// A copy taken just before its process's entry was written (or
		// read after it) is walked at once with a view of that entry, if
		// the entry covers every mapping recorded before the copy; others
		// wait for their process's load.
		var m *unwind.Maps
		if s.unw.hasEntry(c.pid) && (p == nil || s.unw.writtenKey(c.pid) == mapsKey(p)) {
			m, _ = s.unw.view(c.pid)
		}
		s.mu.Lock()
		now := m != nil || s.failed[c.pid]
		if !now {
			c.stack = bytes.Clone(c.stack) // rec's buffer is read into again
			s.pending[c.pid] = append(s.pending[c.pid], c)
		}
		s.mu.Unlock()
		if now {
			s.store(c.id, walk(m, c))
		}
		// The process's first sample asked for its tables already; a copy
		// taken before its first reading's load asks again (a no-op when
		// loaded), so that no copy waits on a job dropped from a full queue.
		s.unw.enqueueUrgent(c.pid)
	}
}

// walk walks c with m (nil: not walkable). It runs without s.mu: a walk
// encodes the tables it passes through (unwind.Maps.Fill), milliseconds for
// a large one, and the drain takes s.mu (takeUntil, forget). Walked under
// the lock, a burst of copies let go by one load held the agent's drain,
// which must be on time, behind the walks of a thread of ordinary priority
// on a loaded host (the hour's soak: 3 drains 3.7-6.9 s late at load 11-15).
func walk(m *unwind.Maps, c stackCopy) walkedCopy {
	if m == nil {
		return walkedCopy{failed: true, at: time.Now()}
	}
	pcs, r := unwind.Unwind(c.regs, c.read, m, c.pid)
	return walkedCopy{pcs: pcs, reason: r, at: time.Now()}
}

// store keeps the walk of copy id for the drain that takes it.
func (s *stackCopies) store(id uint64, w walkedCopy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.walked[id] = w
	s.cond.Broadcast()
}

// loaded is called by the unwinder's worker after each load job of pid,
// with the entry the load wrote (nil: it left the one there) and its error:
// where copies of pid wait, it builds the Go view of the tables the kernel
// has been given for pid and walks them. The view is
// built only for waiting copies and dropped after their walk: it copies
// every table of the process (libLLVM's alone is 10 MB), and building one
// after every load of a whole-system recording cost more CPU than the rest
// of the recording (1.07 of 2.29 s) and held a copy of every process's
// tables until it exited.
func (s *stackCopies) loaded(pid uint32, w *loadedEntry, loadErr error) {
	s.mu.Lock()
	waiting := len(s.pending[pid]) > 0
	if loadErr == nil {
		delete(s.failed, pid)
	}
	s.mu.Unlock()
	if !waiting {
		return
	}
	var (
		m   *unwind.Maps
		key string // of the mappings m has
	)
	switch {
	case loadErr != nil:
	case w != nil:
		m, key = s.unw.viewOf(pid, w.entry, w.tables), w.key
	default: // the entry there was left as it was
		var err error
		if m, err = s.unw.view(pid); err != nil {
			slog.Debug("tables for stack copies", "pid", pid, "err", err)
		}
		key = s.unw.writtenKey(pid)
	}
	// Copies taken after a mapping the view lacks (recorded, not loaded
	// yet) wait for the next load, which was asked for with the record;
	// one that waited half the drain's patience is walked with what is.
	cur := ""
	p := s.procs.Get(int(pid))
	if p != nil {
		cur = mapsKey(p)
	}
	behind := m != nil && cur != "" && key != cur
	s.mu.Lock()
	if m == nil && p != nil {
		// Later copies are not walkable either: walked (as failed) at
		// once, until its exit forgets it. A process the table does not
		// know (gone before it was read) is not remembered: nothing is
		// kept for a PID that no exit would forget.
		s.failed[pid] = true
	}
	var wait, now []stackCopy
	for _, c := range s.pending[pid] {
		if behind && time.Since(c.arrived) < s.wait/2 {
			wait = append(wait, c)
		} else {
			now = append(now, c)
		}
	}
	if len(wait) > 0 {
		s.pending[pid] = wait
	} else {
		delete(s.pending, pid)
	}
	s.mu.Unlock()
	if len(wait) > 0 {
		s.unw.enqueueUrgent(pid)
	}
	// Out of pending, the copies are this worker's: execed and forget no
	// longer see them, and a drain that looks before their walk is stored
	// finds them not walked yet, as it would have before the load.
	for _, c := range now {
		s.store(c.id, walk(m, c))
	}
}

// execed gives up the copies of pid's old image still waiting: they cannot
// be walked with the new image's tables (counted when drained).
func (s *stackCopies) execed(pid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.failed, pid)
	for _, c := range s.pending[pid] {
		s.walked[c.id] = walkedCopy{failed: true, at: time.Now()}
	}
	delete(s.pending, pid)
	s.cond.Broadcast()
}

// take returns the walks of ids, waiting up to s.wait for those not walked
// yet (their tables being built), and forgets them. An id not walked by then
// is missing from the result (fill marks it not walked).
func (s *stackCopies) take(ids []uint64) map[uint64]walkedCopy {
	return s.takeUntil(ids, time.Now().Add(s.wait))
}

// takeUntil is take waiting until deadline (the past: only the walks done).
func (s *stackCopies) takeUntil(ids []uint64, deadline time.Time) map[uint64]walkedCopy {
	out := make(map[uint64]walkedCopy, len(ids))
	if d := time.Until(deadline); d > 0 {
		timer := time.AfterFunc(d, func() {
			s.mu.Lock()
			s.cond.Broadcast()
			s.mu.Unlock()
		})
		defer timer.Stop()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		for {
			if w, ok := s.walked[id]; ok {
				out[id] = w
				delete(s.walked, id)
				break
			}
			if !time.Now().Before(deadline) {
				break
			}
			s.cond.Wait()
		}
	}
	// A walk stored after the drain that wanted it gave up (its copy came
	// late), or whose sample never reached the counts map (a full map),
	// is taken by no later drain: drop it, or one is kept per process.
	stale := time.Now().Add(-2 * s.wait)
	for id, w := range s.walked {
		if w.at.Before(stale) {
			delete(s.walked, id)
		}
	}
	return out
}

// forget drops what is kept for processes that exited, once a drain has
// taken their last samples.
func (s *stackCopies) forget(pids []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pid := range pids {
		delete(s.failed, uint32(pid))
		for _, c := range s.pending[uint32(pid)] {
			s.walked[c.id] = walkedCopy{failed: true, at: time.Now()}
		}
		delete(s.pending, uint32(pid))
	}
}

// addStats adds the copies' losses to the kernel's counters in out: those
// not walked, and those whose walk stopped early, under the names of the
// kernel walker's reasons. s may be nil (no copies).
func (s *stackCopies) addStats(out map[string]uint64) {
	if s == nil {
		return
	}
	out["unwind_stack_copy_not_walked"] += s.notWalked.Load()
	for r := range s.truncated {
		if name := bpf.UnwindTruncatedStat(uint8(r)); name != "" {
			out[name] += s.truncated[r].Load()
		}
	}
}

// hasEntry says pid's unwind_procs entry is written.
func (u *unwinder) hasEntry(pid uint32) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.written[pid] != ""
}

// view returns the tables of pid's unwind_procs entry as unwind.Unwind
// reads them: the entry as written, and each table it names at its id,
// encoded when a walk first reaches it (Maps.Fill), so that a view holds
// the few tables its copies' walks pass through, not every library the
// process maps. The entry and its tables' ids are read together, under the
// lock its load writes them with: a load or an unload of pid on the other
// worker between the two made a view whose ids name no table, and its walks
// stopped at their first frame ("bad table": a process that exited right
// after its block, in TestOffCPUBlockOnce).
func (u *unwinder) view(pid uint32) (*unwind.Maps, error) {
	var entry []byte
	u.mu.Lock()
	err := u.objs.UnwindProcs.Lookup(pid, &entry)
	ids := tableKeys(u.pids[pid])
	u.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("read unwind_procs[%d]: %w", pid, err)
	}
	return u.viewOf(pid, entry, ids), nil
}

// viewOf is view of pid's entry, naming the tables byID (id -> key).
func (u *unwinder) viewOf(pid uint32, entry []byte, byID map[uint32]string) *unwind.Maps {
	m := &unwind.Maps{Procs: map[uint32][]byte{pid: entry}}
	m.Fill = func(id uint32) {
		key, ok := byID[id]
		if !ok {
			return
		}
		var e *unwind.Encoded
		if t, err, ok := u.cache.Get(key); ok && err == nil {
			e, err = t.Encoded()
			if err != nil {
				return // its mappings stop the walk (bad table), counted
			}
		} else {
			// Not in the cache: evicted while the kernel still walks
			// with it (libc's, in a long whole-system recording, by
			// larger tables built since), or never kept (larger than
			// the cache's budget). The kernel's maps hold it.
			if e, err = u.kernelTable(id, key); err != nil {
				slog.Debug("read a table back for stack copies", "pid", pid, "err", err)
				return
			}
		}
		_ = m.ShareTable(id, e)
	}
	return m
}

// kernelTable reads back from the maps the table of key loaded at id: the
// bytes the kernel walks with. The table is held in place while it is read.
func (u *unwinder) kernelTable(id uint32, key string) (*unwind.Encoded, error) {
	u.mu.Lock()
	lt := u.tables[key]
	if lt == nil || lt.id != id {
		u.mu.Unlock()
		return nil, fmt.Errorf("table %d of %s is no longer loaded", id, key)
	}
	lt.refs++
	ti := lt.info
	u.mu.Unlock()
	defer u.release([]*loadedTable{lt})
	e := &unwind.Encoded{Arch: ti.Arch, Base: ti.Base}
	var err error
	if e.Rows, err = readArray(u.objs.UnwindRows, ti.FirstRow, int(ti.NumRows), unwind.RowSize); err != nil {
		return nil, fmt.Errorf("read rows of table %d: %w", id, err)
	}
	if e.Rules, err = readArray(u.objs.UnwindRules, ti.FirstRule, int(ti.NumRules), unwind.RuleSize); err != nil {
		return nil, fmt.Errorf("read rules of table %d: %w", id, err)
	}
	if e.Pages, err = readArray(u.objs.UnwindPages, ti.FirstPage, int(ti.NumPages), unwind.PageSize); err != nil {
		return nil, fmt.Errorf("read pages of table %d: %w", id, err)
	}
	return e, nil
}

// fill sets the user stack of s from the walk of copy id; a copy that could
// not be walked is counted (unwind_stack_copy_not_walked, in samples) and
// marked (StackCopyNotWalked), and a walk that stopped early is counted
// by its reason, as the kernel counts its own walks (the drain marks it).
func (s *stackCopies) fill(smp *Sample, walked map[uint64]walkedCopy, id int64, count uint64) {
	w, ok := walked[uint64(id)]
	if s == nil || !ok || w.failed || len(w.pcs) == 0 {
		smp.UserErr = StackCopyNotWalked
		if s != nil {
			s.notWalked.Add(count)
		}
		return
	}
	smp.User, smp.UserTables, smp.UserReason = w.pcs, true, w.reason
	if w.reason != unwind.ReasonComplete && int(w.reason) < len(s.truncated) {
		s.truncated[w.reason].Add(count)
	}
}
