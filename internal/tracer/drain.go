package tracer

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"

	"github.com/emberprof/ember/bpf"
	"github.com/emberprof/ember/unwind"
)

// Sample is one counts-map row with its stacks resolved to addresses.
type Sample struct {
	PID, TID uint32
	Comm     string // thread name
	Kind     uint32 // bpf.KindOnCPU, bpf.KindOffCPU*
	Count    uint64 // on-CPU ticks, or off-CPU blocks kept
	NS       uint64 // off-CPU weighted nanoseconds
	User     []uint64
	Kernel   []uint64
	UserErr  int64 // negative errno when the user stack is missing
	KernErr  int64 // negative errno when the kernel stack is missing

	// UserTables says the user stack was walked with unwind tables, and
	// UserReason why that walk stopped: anything but unwind.ReasonComplete
	// means the stack is truncated at its root end.
	UserTables bool
	UserReason unwind.Reason
	// UserFPFallback says the user stack was walked with frame pointers
	// although the tracer walks with tables: the process had no tables in
	// the kernel yet (they are built after its first samples). Counted as
	// unwind_fp_fallback; the stack may lack the callers of frameless
	// functions.
	UserFPFallback bool

	// Waker is who woke an off-CPU block (Config.Wakers); nil when the
	// block did not end in a wakeup the program saw (preemption).
	Waker *Waker

	copies *copyWait // the copies its stacks are to be walked from, until they are
}

// Waker is the thread that woke a blocked one, with its stacks at the wakeup.
type Waker struct {
	PID              uint32
	Comm             string
	User, Kernel     []uint64
	UserErr, KernErr int64
	UserTables       bool
	UserReason       unwind.Reason
}

// flipGrace is how long Drain waits after flipping the live set before it
// reads the idle one. BPF programs run to completion with preemption
// disabled, in microseconds; a program that read the old set index just
// before the flip has long finished after this.
const flipGrace = 5 * time.Millisecond

// Drain flips the live set and reads and clears the idle one: every sample
// is returned exactly once, none is lost between read and delete. A sample
// whose user stack the kernel copied is returned once the copy is walked:
// Drain waits for it (up to stackCopyWait), or with Config.DrainNoWait
// returns it from a later Drain (copywait.go).
func (t *Tracer) Drain() ([]Sample, error) {
	out, exited, err := t.drain(false)
	t.markExited(exited)
	return out, err
}

// DrainAll is Drain that waits for every copy still being walked, those
// held back by earlier drains too: the last drain of a DrainNoWait tracer.
func (t *Tracer) DrainAll() ([]Sample, error) {
	out, exited, err := t.drain(true)
	t.markExited(exited)
	return out, err
}

// DrainQueued is Drain (DrainAll when final) for a caller that adds the
// samples on another goroutine, behind a queue (the agent): it returns the
// processes whose last samples this drain read instead of marking them
// exited, and the caller marks them (proc.Table.MarkExited) once it has
// added those samples, so that a Sweep meanwhile does not forget a process
// whose samples wait in the queue. It keeps the drain off the process
// table's lock too, which Add holds while it opens a process's binaries.
func (t *Tracer) DrainQueued(final bool) (samples []Sample, exited []int, err error) {
	return t.drain(final)
}

func (t *Tracer) markExited(pids []int) {
	for _, pid := range pids {
		t.procs.MarkExited(pid)
	}
}

func (t *Tracer) drain(final bool) (_ []Sample, exited []int, _ error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// Processes whose exit was reported before the flip took their last
	// samples before it: once this drain has read them, they may go.
	t.exitMu.Lock()
	exited = t.exits
	t.exits = nil
	t.exitMu.Unlock()
	defer func() {
		if t.copies != nil {
			t.copies.forget(exited)
		}
	}()
	// The BPF programs read a generation (live_gen), whose low bit is the
	// live set: a stack stored in an earlier generation is stale, however
	// many flips ago.
	idle := t.set & 1
	t.set++
	if err := t.objs.ActiveSet.Put(uint32(0), t.set); err != nil {
		return nil, exited, fmt.Errorf("flip live map set: %w", err)
	}
	time.Sleep(flipGrace)

	set := idleSet{counts: t.objs.Counts[idle], stacks: t.objs.Stacks[idle],
		kstacks: t.objs.OffCPUKStacks[idle], ustacks: t.objs.HashedUStacks[idle]}
	out, fpFallbacks, err := set.drain(t.unw != nil, &t.drainLookupFailed)
	t.fpFallbacks.Add(fpFallbacks)
	out, exited = t.settleCopies(out, exited, final)
	return out, exited, err
}

// idleSet is the maps of the idle set, which no BPF program writes.
type idleSet struct {
	counts  *ebpf.Map // sample_key -> sample_value
	stacks  *ebpf.Map // on-CPU STACK_TRACE map: id -> frames
	kstacks *ebpf.Map // off-CPU kernel stacks, by hash
	ustacks *ebpf.Map // user stacks walked with tables and off-CPU ones, by hash
}

// drain reads and clears the set. tables says user stacks are meant to be
// walked with tables: the samples walked with frame pointers instead are
// marked, and their count returned. Stack ids no map holds are counted in
// failed. A stack the kernel copied instead of walking is left to
// settleCopies (Sample.copies).
func (m idleSet) drain(tables bool, failed *atomic.Uint64) ([]Sample, uint64, error) {
	keys, vals, err := drainCounts(m.counts)
	if err != nil {
		return nil, 0, err
	}
	stacks, kstacks, ustacks := m.stacks, m.kstacks, m.ustacks
	d := stackLookup{kstacks: kstacks, ustacks: ustacks, cache: map[stackCacheKey][]uint64{}, failed: failed}
	// The off-CPU stack maps are read and emptied whole, in batches; the
	// stack-trace map (no batch operations) a stack at a time, below.
	for _, hm := range []*ebpf.Map{kstacks, ustacks} {
		if err := d.drainHash(hm); err != nil {
			return nil, 0, err
		}
	}
	lookup := d.lookup
	var fpFallbacks uint64
	out := make([]Sample, len(keys))
	for i, k := range keys {
		s := Sample{
			PID: k.Pid, TID: k.Tid, Kind: k.Kind,
			Count: vals[i].Count, NS: vals[i].Ns,
			Comm: commString(k.Comm[:]),
		}
		// On-CPU stacks walked with frame pointers are in the stack-trace
		// map; off-CPU stacks and every table walk in the hashed_ustacks map.
		hashed := k.UserFlags&bpf.UserStackHashed != 0
		if k.Kind == bpf.KindOnCPU {
			s.Kernel, s.KernErr = lookup(stacks, k.KernStack)
		} else {
			s.Kernel, s.KernErr = lookup(kstacks, k.KernStack)
		}
		switch {
		case k.UserFlags&bpf.UserStackCopied != 0:
			// Filled from the copy's walk (settleCopies, copywait.go).
			s.copies = &copyWait{user: k.UserStack, waker: -1, count: vals[i].Count}
		case k.Kind == bpf.KindOnCPU && !hashed:
			s.User, s.UserErr = lookup(stacks, k.UserStack)
		default:
			s.User, s.UserErr = lookup(ustacks, k.UserStack)
		}
		if hashed {
			s.UserTables = true
			s.UserReason = unwind.Reason(k.UserFlags & bpf.UserStackReasonMask)
		} else if k.UserFlags&bpf.UserStackCopied != 0 {
			// filled from the copy's walk
		} else if tables && len(s.User) > 0 {
			s.UserFPFallback = true
			fpFallbacks += vals[i].Count
		}
		if k.Kind != bpf.KindOnCPU && k.WakerFlags&bpf.WakerWoke != 0 {
			w := &Waker{PID: k.WakerPid, Comm: commString(k.WakerComm[:])}
			w.Kernel, w.KernErr = lookup(kstacks, k.WakerKernStack)
			if k.WakerFlags&bpf.UserStackCopied != 0 {
				if s.copies == nil {
					s.copies = &copyWait{user: -1, count: vals[i].Count}
				}
				s.copies.waker = k.WakerUserStack
			} else {
				w.User, w.UserErr = lookup(ustacks, k.WakerUserStack)
			}
			if k.WakerFlags&bpf.UserStackHashed != 0 {
				w.UserTables = true
				w.UserReason = unwind.Reason(k.WakerFlags & bpf.UserStackReasonMask)
			}
			s.Waker = w
		}
		out[i] = s
	}
	// What is left: stacks no row refers to (their row did not fit in the
	// counts map), and all of a map read without batches.
	if err := clearMap[uint32](stacks); err != nil {
		return out, fpFallbacks, err
	}
	for _, m := range []*ebpf.Map{kstacks, ustacks} {
		if d.drained[m] {
			continue
		}
		if err := clearMap[uint64](m); err != nil {
			return out, fpFallbacks, err
		}
	}
	return out, fpFallbacks, nil
}

// The codes a Sample's UserErr and KernErr (and a Waker's) hold for a
// missing stack: the negated errnos the BPF programs store (enum errno in
// bpf/ember.h), and StackLookupFailed.
const (
	// StackNone: there was no stack to take (a kernel thread's user stack,
	// an interrupt in idle): not a loss.
	StackNone = -bpf.ErrnoNoEnt
	// StackFault: unreadable; for an on-CPU kernel stack, the tick came in
	// user mode (not a loss).
	StackFault     = -bpf.ErrnoFault
	StackCollision = -bpf.ErrnoExist // another stack had its bucket or hash
	StackMapFull   = -bpf.ErrnoNoMem
	StackStale     = -bpf.ErrnoStale // stored before a drain flipped the sets
	// StackUnreported: the block's end came with no sched_switch (a
	// kernel that leaves some switches out), so its stacks could not be
	// taken; its time is counted (offcpu_switch_in_unseen).
	StackUnreported = -bpf.ErrnoNoData
)

// StackLostReason says why a stack with code (negative, not StackNone) is
// missing, in words for a pseudo-frame.
func StackLostReason(code int64) string {
	switch code {
	case StackCollision:
		return "stack map bucket collision"
	case StackFault:
		return "unreadable"
	case StackMapFull:
		return "stack map full"
	case StackStale:
		return "taken before a drain"
	case StackUnreported:
		return "the kernel did not report the switch that ended the block"
	case StackLookupFailed:
		return "not in the stack map at drain"
	case StackCopyNotWalked:
		return "copied before its tables were loaded, not walked"
	}
	return fmt.Sprintf("errno %d", -code)
}

// StackLookupFailed is the error code (in Sample.UserErr, KernErr and the
// waker's) of a stack whose id a counts row holds but whose stack the idle
// set's stack map does not: removed or never stored before the drain read
// it. It is no errno (those are above -4096), so that it cannot be taken for
// the kernel's own "no stack" (-ENOENT).
const StackLookupFailed int64 = -4096

type stackCacheKey struct {
	m  *ebpf.Map
	id int64
}

// stackLookup resolves stack ids to addresses during one drain. Each map has
// its own id space; lookups are cached per map.
type stackLookup struct {
	kstacks, ustacks *ebpf.Map // the off-CPU maps, keyed by hash
	cache            map[stackCacheKey][]uint64
	failed           *atomic.Uint64 // lookups that found nothing
	// drained: maps read whole into cache (and emptied) by drainHash; an
	// id not in cache is then not in the map.
	drained map[*ebpf.Map]bool
	// noLookupAndDelete: the kernel has no lookup-and-delete for
	// stack-trace maps (before Linux 6.13): look up, and clear after.
	noLookupAndDelete bool
}

// drainChunk is the rows a batch operation moves: big enough that a drain of
// thousands of stacks takes a few system calls, small enough for the buffers
// (a user stack is 1 KiB) to stay small.
const drainChunk = 256

// drainHash reads and deletes every stack of an off-CPU stack map (hash,
// key a uint64) into the cache with BatchLookupAndDelete: a system call per
// drainChunk stacks instead of three per stack (look up, list, delete).
// Where the kernel lacks batch operations the map is left to lookup and
// clearMap.
func (d *stackLookup) drainHash(m *ebpf.Map) error {
	keys := make([]uint64, drainChunk)
	var ks []bpf.KStack
	var us []bpf.UStack
	var vals any
	if m == d.kstacks {
		ks = make([]bpf.KStack, drainChunk)
		vals = ks
	} else {
		us = make([]bpf.UStack, drainChunk)
		vals = us
	}
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookupAndDelete(&cursor, keys, vals, nil)
		for i := range n {
			var pcs []uint64
			if ks != nil {
				pcs = trimZeros(ks[i].Ips[:])
			} else {
				pcs = trimZeros(us[i].Ips[:])
			}
			d.cache[stackCacheKey{m, int64(keys[i])}] = pcs
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			if d.drained == nil {
				d.drained = map[*ebpf.Map]bool{}
			}
			d.drained[m] = true
			return nil
		case errors.Is(err, ebpf.ErrNotSupported):
			if n > 0 {
				return fmt.Errorf("drain %s: batch stopped after %d stacks: %w", m, n, err)
			}
			return nil
		case err != nil:
			return fmt.Errorf("drain %s: %w", m, err)
		}
	}
}

// lookup returns the addresses of stack id in m, or the negative code the
// kernel stored instead of an id, or StackLookupFailed (counted) when the
// map has no such stack.
func (d *stackLookup) lookup(m *ebpf.Map, id int64) ([]uint64, int64) {
	if id < 0 {
		return nil, id
	}
	if pcs, ok := d.cache[stackCacheKey{m, id}]; ok {
		return pcs, 0
	}
	var (
		pcs []uint64
		err error
	)
	switch {
	case d.drained[m]:
		err = ebpf.ErrKeyNotExist
	case m == d.kstacks:
		var ks bpf.KStack
		err = m.Lookup(uint64(id), &ks)
		pcs = trimZeros(ks.Ips[:])
	case m == d.ustacks:
		var us bpf.UStack
		err = m.Lookup(uint64(id), &us)
		pcs = trimZeros(us.Ips[:])
	default:
		// The stack-trace map's id: taken out in one call where the kernel
		// can, so that clearMap finds only stacks no row refers to.
		var raw [127]uint64
		if !d.noLookupAndDelete {
			err = m.LookupAndDelete(uint32(id), &raw)
			if errors.Is(err, ebpf.ErrNotSupported) {
				d.noLookupAndDelete = true
			}
		}
		if d.noLookupAndDelete {
			err = m.Lookup(uint32(id), &raw)
		}
		pcs = trimZeros(raw[:])
	}
	if err != nil {
		d.failed.Add(1)
		return nil, StackLookupFailed
	}
	d.cache[stackCacheKey{m, id}] = pcs
	return pcs, 0
}

// drainCounts reads and deletes every row of a counts map, in batches where
// the kernel supports it.
func drainCounts(m *ebpf.Map) ([]bpf.SampleKey, []bpf.SampleValue, error) {
	var (
		keys []bpf.SampleKey
		vals []bpf.SampleValue
	)
	const chunk = 1024
	kbuf := make([]bpf.SampleKey, chunk)
	vbuf := make([]bpf.SampleValue, chunk)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookupAndDelete(&cursor, kbuf, vbuf, nil)
		keys = append(keys, kbuf[:n]...)
		vals = append(vals, vbuf[:n]...)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return keys, vals, nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("drain counts: %w", err)
		}
	}
	// Kernels without batch operations: iterate, then delete what was read.
	var k bpf.SampleKey
	var v bpf.SampleValue
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("drain counts: %w", err)
	}
	for i := range keys {
		_ = m.Delete(&keys[i])
	}
	return keys, vals, nil
}

// clearMap deletes every key of an idle map.
func clearMap[K uint32 | uint64](m *ebpf.Map) error {
	var keys []K
	var k K
	for {
		var next K
		var err error
		if len(keys) == 0 {
			err = m.NextKey(nil, &next)
		} else {
			err = m.NextKey(k, &next)
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", m, err)
		}
		keys = append(keys, next)
		k = next
		if len(keys) > int(m.MaxEntries())*2 {
			break
		}
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear %s: %w", m, err)
		}
	}
	return nil
}

func trimZeros(pcs []uint64) []uint64 {
	n := 0
	for n < len(pcs) && pcs[n] != 0 {
		n++
	}
	out := make([]uint64, n)
	copy(out, pcs[:n])
	return out
}

func commString(b []int8) string {
	buf := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		buf = append(buf, byte(c))
	}
	return string(buf)
}
