package tracer

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/emberprof/ember/bpf"
	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/unwind"
)

// UnwindMode says how on-CPU user stacks are walked.
type UnwindMode string

const (
	// UnwindAuto walks with unwind tables where the kernel can (bpf_loop,
	// bpf_task_pt_regs), else with frame pointers.
	UnwindAuto UnwindMode = ""
	// UnwindTables walks with unwind tables built from .eh_frame (and Go
	// code's from .gopclntab), falling back to frame pointers for Go before
	// 1.20, binaries without CFI, and processes whose tables are not loaded
	// yet.
	UnwindTables UnwindMode = "tables"
	// UnwindFP walks with frame pointers only (bpf_get_stackid).
	UnwindFP UnwindMode = "fp"
)

// ParseUnwindMode parses the --unwind flag.
func ParseUnwindMode(s string) (UnwindMode, error) {
	switch m := UnwindMode(s); m {
	case UnwindAuto, UnwindTables, UnwindFP:
		return m, nil
	}
	return "", fmt.Errorf("unwind mode %q: want tables or fp", s)
}

// unwindCacheBudget bounds the memory of built tables kept for reuse (a
// table takes about 24 bytes a row in Go: libc's 0.7 MB, libclang-cpp's
// 32 MB). Tables evicted from it are rebuilt when a process needs them again.
const unwindCacheBudget = 96 << 20

// UnwindStats describes the tables loaded into the kernel.
type UnwindStats struct {
	Processes  int           // processes with an unwind_procs entry now
	Tables     int           // tables in the maps now
	Bytes      int64         // their size in the maps
	Built      int           // tables built (or failed to), cache misses
	BuildTime  time.Duration // total time building them
	LoadFailed int           // processes whose entry could not be written
	Largest    string        // the largest table's file
	LargestB   int64         // and its size in the maps

	// Go binaries: tables built from their pclntab, functions in them that
	// could not be described (each walks no further), and mappings of Go
	// before 1.20 walked with frame pointers instead (frameless leaves lose
	// their callers there).
	GoTables, GoBadFuncs, GoFramePointers int

	// BadBinaries counts files whose reading panicked (a hostile or
	// corrupt binary): their code is walked with frame pointers.
	// Recovered counts jobs of the worker that panicked outside any one
	// file's reading; the process keeps frame pointers until its next job.
	BadBinaries, Recovered int
	// Swept counts entries unloaded by the watch: processes gone without
	// an exit job (a lost exit event, or a full queue).
	Swept int
	// Deferred counts loads that waited for a large table built in the
	// background (largeTableSource).
	Deferred int
}

// unwinder loads the unwind tables of processes into the kernel maps, in
// the background: the sampling path never waits for it. Until a process's
// entry is written, its stacks are walked with frame pointers.
type unwinder struct {
	objs  *bpf.Objects
	procs *proc.Table
	cache *unwind.Cache
	jobs  chan unwindJob
	// urgent holds loads that copies wait for; the worker takes it first.
	urgent chan unwindJob
	done   chan struct{}

	busyMu   sync.Mutex
	busyCond *sync.Cond
	busy     map[uint32]bool // pids a worker loads or unloads now (lockPID)

	qmu    sync.Mutex
	queued map[uint32]uint8 // pid -> queuedLoad|queuedUrgent: a load waits in that queue
	wg     sync.WaitGroup

	mu                 sync.Mutex // guards what follows, for Stats
	rows, rules, pages *unwind.Space
	ids                *unwind.Space
	tables             map[string]*loadedTable // by binary key
	pids               map[uint32][]*loadedTable
	written            map[uint32]string    // pid -> mapsKey of its entry
	gen                map[uint32]uint64    // pid -> entries invalidated (invalidate)
	building           map[string][]uint32  // table key -> pids whose loads wait for its background build
	builder            chan struct{}        // held by the one background build running
	builtBefore        map[string]bool      // table keys built in the background once
	libsSince          map[uint32]time.Time // pid -> first load that waited for its libraries
	bad                map[badFile]bool     // files that panicked a parser
	stats              UnwindStats

	// loaded, if set, is called after each load job with its error (the
	// stack copies' walker, stackcopy.go).
	loaded func(pid uint32, w *loadedEntry, err error)
}

type unwindJob struct {
	pid    uint32
	exit   bool
	urgent bool // from the urgent queue
	sweep  bool // unload the entries of processes that no longer run
}

// loadedTable is a table in the maps, shared by the processes that map its
// binary; with no users it stays loaded until its space is needed.
type loadedTable struct {
	key  string
	id   uint32
	info unwind.TableInfo
	size int64
	refs int
}

func newUnwinder(objs *bpf.Objects, procs *proc.Table, sizes bpf.UnwindSizes, cacheBytes int64) *unwinder {
	if cacheBytes <= 0 {
		cacheBytes = unwindCacheBudget
	}
	u := &unwinder{
		objs:        objs,
		procs:       procs,
		cache:       unwind.NewCache(cacheBytes, 1),
		jobs:        make(chan unwindJob, 4096),
		urgent:      make(chan unwindJob, 1024),
		queued:      map[uint32]uint8{},
		busy:        map[uint32]bool{},
		done:        make(chan struct{}),
		rows:        unwind.NewSpace(sizes.Rows),
		rules:       unwind.NewSpace(sizes.Rules),
		pages:       unwind.NewSpace(sizes.Pages),
		ids:         unwind.NewSpace(sizes.Tables),
		tables:      map[string]*loadedTable{},
		pids:        map[uint32][]*loadedTable{},
		written:     map[uint32]string{},
		gen:         map[uint32]uint64{},
		building:    map[string][]uint32{},
		builder:     make(chan struct{}, 1),
		builtBefore: map[string]bool{},
		libsSince:   map[uint32]time.Time{},
		bad:         map[badFile]bool{},
	}
	u.busyCond = sync.NewCond(&u.busyMu)
	u.wg.Add(2)
	go u.run()
	go u.runUrgent()
	return u
}

// enqueue asks for pid's tables to be loaded (or, exit, dropped). It never
// blocks: a full queue drops the request, and that process keeps frame
// pointers. A load already queued for pid is not queued again: a process's
// exec brings a mmap record for each library, and one load after them does.
func (u *unwinder) enqueue(pid uint32, exit bool) {
	u.enqueueOn(u.jobs, pid, exit, queuedLoad)
}

// enqueueUrgent asks for pid's tables ahead of the other loads: copies of
// its stack wait for them (stackcopy.go), and a drain waits for those.
func (u *unwinder) enqueueUrgent(pid uint32) {
	u.enqueueOn(u.urgent, pid, false, queuedUrgent)
}

// The bits of unwinder.queued: a load of the pid is in that queue.
const (
	queuedLoad = 1 << iota
	queuedUrgent
)

func (u *unwinder) enqueueOn(q chan unwindJob, pid uint32, exit bool, bit uint8) {
	if !exit {
		u.qmu.Lock()
		if u.queued[pid]&bit != 0 {
			u.qmu.Unlock()
			return
		}
		u.queued[pid] |= bit
		u.qmu.Unlock()
	}
	select {
	case q <- unwindJob{pid: pid, exit: exit, urgent: bit == queuedUrgent}:
	default:
		if !exit {
			u.qmu.Lock()
			u.queued[pid] &^= bit
			u.qmu.Unlock()
		}
		slog.Debug("unwind queue full", "pid", pid)
	}
}

// writtenKey returns the mapsKey of pid's entry, "" if none.
func (u *unwinder) writtenKey(pid uint32) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.written[pid]
}

// invalidate deletes pid's unwind entry at once, at its exec or when it
// maps a file executable: until the tables of what it maps now are in, its
// samples are copied (stackcopy.go) and walked in user space with them,
// instead of walked in the kernel with an entry that lacks the new mapping
// (a walk into libc, mapped after the entry was written, stopped there) or
// with the old image's tables. A load running meanwhile does not write its
// (older) entry: the generation it began with is gone. It then asks for
// the new entry (exec: first dropping the old one's references).
func (u *unwinder) invalidate(pid uint32, exec bool) {
	u.mu.Lock()
	u.gen[pid]++
	err := u.objs.UnwindProcs.Delete(pid)
	delete(u.written, pid)
	u.mu.Unlock()
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		slog.Debug("delete unwind_procs entry", "pid", pid, "err", err)
	}
	if exec {
		u.enqueue(pid, true)
	} else {
		// Behind the loads copies wait for (enqueueUrgent): whole-system,
		// every exec of a large program would otherwise come first.
		u.enqueue(pid, false)
	}
}

// enqueueSweep asks the worker to unload the entries of processes that no
// longer run (the tracer's watch); dropped when the queue is full, as the
// next watch asks again.
func (u *unwinder) enqueueSweep() {
	select {
	case u.jobs <- unwindJob{sweep: true}:
	default:
	}
}

// sweep unloads the entries of processes the table has forgotten or that
// no longer run. It runs on the worker, so no load of the same process runs
// beside it.
func (u *unwinder) sweep() {
	u.mu.Lock()
	pids := make([]uint32, 0, len(u.pids))
	for pid := range u.pids {
		pids = append(pids, pid)
	}
	u.mu.Unlock()
	n := 0
	for _, pid := range pids {
		if !u.procs.Alive(int(pid)) {
			u.lockPID(pid)
			u.unload(pid)
			u.unlockPID(pid)
			n++
		}
	}
	if n > 0 {
		u.mu.Lock()
		u.stats.Swept += n
		u.mu.Unlock()
		slog.Debug("unwind entries of processes gone without an exit job", "count", n)
	}
}

func (u *unwinder) close() {
	close(u.done)
	u.wg.Wait()
}

// runUrgent is a second worker for the loads copies wait for only: the
// first may spend seconds on one large binary's table (libLLVM's), and a
// drain waits at most stackCopyWait for the copies.
func (u *unwinder) runUrgent() {
	defer u.wg.Done()
	for {
		select {
		case <-u.done:
			return
		case j := <-u.urgent:
			u.do(j)
		}
	}
}

// lockPID keeps the two workers from loading (or unloading) one process at
// once.
func (u *unwinder) lockPID(pid uint32) {
	u.busyMu.Lock()
	for u.busy[pid] {
		u.busyCond.Wait()
	}
	u.busy[pid] = true
	u.busyMu.Unlock()
}

func (u *unwinder) unlockPID(pid uint32) {
	u.busyMu.Lock()
	delete(u.busy, pid)
	u.busyCond.Broadcast()
	u.busyMu.Unlock()
}

func (u *unwinder) run() {
	defer u.wg.Done()
	for {
		select {
		case <-u.done:
			return
		case j := <-u.urgent:
			u.do(j)
			continue
		default:
		}
		select {
		case <-u.done:
			return
		case j := <-u.urgent:
			u.do(j)
		case j := <-u.jobs:
			u.do(j)
		}
	}
}

// do runs one job. A panic in it is recovered, counted and logged once, so
// that the worker goes on loading other processes' tables: mapping recovers
// what one file's reading throws, and this catches the rest.
func (u *unwinder) do(j unwindJob) {
	defer func() {
		if r := recover(); r != nil {
			u.mu.Lock()
			u.stats.Recovered++
			first := u.stats.Recovered == 1
			u.mu.Unlock()
			if first {
				slog.Warn("unwind table worker recovered from a panic; that process walks with frame pointers", "pid", j.pid, "panic", r, "stack", string(debug.Stack()))
			} else {
				slog.Debug("unwind table worker recovered from a panic", "pid", j.pid, "panic", r)
			}
		}
	}()
	if !j.exit && !j.sweep {
		// A record from now on asks again.
		bit := uint8(queuedLoad)
		if j.urgent {
			bit = queuedUrgent
		}
		u.qmu.Lock()
		if u.queued[j.pid] &^= bit; u.queued[j.pid] == 0 {
			delete(u.queued, j.pid)
		}
		u.qmu.Unlock()
	}
	if testHookJob != nil {
		testHookJob(j)
	}
	switch {
	case j.sweep:
		u.sweep()
		return
	case j.exit:
		u.lockPID(j.pid)
		defer u.unlockPID(j.pid)
		u.unload(j.pid)
		return
	}
	var (
		w   *loadedEntry
		err error
	)
	func() {
		u.lockPID(j.pid)
		defer u.unlockPID(j.pid) // a panic in load is recovered above
		w, err = u.load(j.pid)
	}()
	if errors.Is(err, errNoMappings) || errors.Is(err, errTableBuilding) || errors.Is(err, errLibrariesPending) {
		return // the records of its mappings, or the build, ask again
	}
	if err != nil {
		u.mu.Lock()
		u.stats.LoadFailed++
		u.mu.Unlock()
		slog.Debug("load unwind tables", "pid", j.pid, "err", err)
	}
	if u.loaded != nil {
		u.loaded(j.pid, w, err)
	}
}

// errNoMappings is load's error for a process with no mappings known yet.
var errNoMappings = errors.New("no mappings known yet")

// testHookJob, if set, is called by the worker with each job: tests panic
// in it.
var testHookJob func(j unwindJob)

func (u *unwinder) unload(pid uint32) {
	if err := u.objs.UnwindProcs.Delete(pid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		slog.Debug("delete unwind_procs entry", "pid", pid, "err", err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, lt := range u.pids[pid] {
		lt.refs--
	}
	delete(u.pids, pid)
	delete(u.written, pid)
	delete(u.gen, pid)
	delete(u.libsSince, pid)
}

// Stats returns what is loaded.
func (u *unwinder) Stats() UnwindStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.stats
	s.Processes, s.Tables = len(u.pids), len(u.tables)
	return s
}
