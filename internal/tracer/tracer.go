package tracer

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/bpf"
	"github.com/emberprof/ember/internal/proc"
)

// Config says what to trace. The zero value of each filter means "all".
type Config struct {
	Frequency   int      // on-CPU samples per second per CPU
	PIDs        []int    // only these processes (and their threads)
	FollowForks bool     // and every child they fork (for a launched command)
	Cgroups     []string // only tasks under these cgroup v2 directories
	IncludeIdle bool     // count the idle task
	IncludeSelf bool     // do not exclude Ember itself

	OnCPU  bool
	OffCPU bool
	// Wakers takes the waker's stacks and comm for every kept off-CPU block
	// that ended in a wakeup (Sample.Waker).
	Wakers bool

	OffCPUThreshold time.Duration
	OffCPUMin       time.Duration
	OffCPUKinds     uint32 // bit (1 << kind); 0 means all
	OffCPUMethod    OffCPUMethod
	// OffCPUHotInStorage keeps the hot per-thread off-CPU records in task
	// storage even where pid_max allows the array (for tests).
	OffCPUHotInStorage bool

	// Unwind says how on-CPU user stacks are walked; the zero value picks
	// tables where the kernel loads the table walker.
	Unwind UnwindMode

	// refuse names programs the kernel is made to refuse (bpf.Config.Refuse):
	// for tests of the fallbacks.
	refuse []string
	// walkerAtOnce loads the table walker before sampling starts, as
	// before samplerLater: set when the walker loaded later was refused,
	// so that auto decides the usual way and says why.
	walkerAtOnce bool

	// KernelBTF is a file with the kernel's BTF, for kernels without
	// /sys/kernel/btf/vmlinux (--btf, EMBER_BTF); empty: the kernel's own.
	KernelBTF string

	// Map sizes; 0 picks a size from the rate, CPUs and DrainInterval.
	StackEntries  uint32
	CountsEntries uint32
	DrainInterval time.Duration
	// DrainNoWait: Drain never waits for copied user stacks to be walked;
	// a sample whose copy is not walked yet comes with a later Drain
	// (copywait.go). The agent's drain loop, which must be on time.
	DrainNoWait bool
	// UnwindRowBytes caps the kernel memory of the unwind-rows array, the
	// largest map; 0 keeps the default (24 MiB).
	UnwindRowBytes int64
	// StackMapBytes caps the kernel memory of each stack-trace map when
	// StackEntries is 0 (the size from the rate is cut to fit); the counts
	// maps get 4 entries per stack entry. 0: no cap.
	StackMapBytes int64
	// KnownPIDEntries sizes the kernel's set of processes announced to user
	// space; StackCopyBytes the ring of copied user stacks (a power of 2).
	// 0: the defaults (32768; for on-CPU alone, sized from the rate by
	// onCPUCopyBytes, else 2 MiB).
	KnownPIDEntries uint32
	StackCopyBytes  uint32
	// UnwindCacheBytes bounds the built unwind tables kept in Go for reuse
	// (Go heap); 0: 96 MiB.
	UnwindCacheBytes int64
}

// MaxCgroups is how many cgroup subtrees Config.Cgroups may name.
const MaxCgroups = bpf.MaxCgroups

// Tracer owns the loaded programs and their attachments.
type Tracer struct {
	cfg   Config
	objs  *bpf.Objects
	procs *proc.Table
	cpus  map[int]*cpuEvent // the cpu-clock event of each CPU sampled (hotplug.go)
	links []link.Link
	rb    *ringbuf.Reader
	wg    sync.WaitGroup
	unw   *unwinder // nil without unwind tables
	// copies walks the user stacks copied for processes whose tables were
	// not loaded yet (stackcopy.go); nil without unwind tables.
	copies *stackCopies
	// mmaps records every executable mapping, exec and fork as it happens
	// (mmaps.go).
	mmaps *mmapRecorder

	mu  sync.Mutex // serialises Drain
	set uint32     // the live set's generation; the set is its low bit

	// drainLookupFailed counts stack ids that Drain found in a counts row
	// but not in the stack map (Stats: drain_stack_lookup_failed).
	drainLookupFailed atomic.Uint64
	// fpFallbacks counts user stacks walked with frame pointers while the
	// tracer walks with tables, in samples (on-CPU ticks, off-CPU blocks)
	// (Stats: unwind_fp_fallback).
	fpFallbacks atomic.Uint64

	// held are samples of earlier drains whose stack copies were not
	// walked yet (DrainNoWait; copywait.go). Guarded by mu.
	held []Sample

	exitMu sync.Mutex
	exits  []int // processes that exited since the last drain began

	// missedExits counts processes found gone without an exit event
	// (MissedExits).
	missedExits atomic.Uint64
	cpusOpened  atomic.Uint64 // CPU events opened after start (CPUsOpened)
	stopWatch   chan struct{} // closed by Close: watch returns
	watchDone   chan struct{}

	// samplingCPU is this process's CPU time (cpuTime) when Start enabled
	// the cpu-clock events: BenchmarkStart reports what a start costs
	// before it samples.
	samplingCPU time.Duration
}

// Start checks privileges, loads and attaches the programs, and starts
// following processes into procs.
func Start(cfg Config, procs *proc.Table) (*Tracer, error) {
	given := cfg
	if err := Preflight(cfg.KernelBTF); err != nil {
		return nil, err
	}
	// What user space reads of a PID must be under the cgroups too: the
	// PID may name another process by the time it is read.
	if err := procs.SetCgroupScope(cfg.Cgroups); err != nil {
		return nil, fmt.Errorf("process table: %w", err)
	}
	if err := probeBasics(cfg.OnCPU); err != nil {
		return nil, err
	}
	kernelTypes, err := loadKernelBTF(cfg.KernelBTF)
	if err != nil {
		return nil, err
	}
	if cfg.Frequency <= 0 {
		cfg.Frequency = 99
	}
	if cfg.DrainInterval <= 0 {
		cfg.DrainInterval = time.Second
	}
	cpus, err := onlineCPUs()
	if err != nil {
		return nil, err
	}
	if cfg.StackEntries == 0 {
		cfg.StackEntries = stackEntries(cfg.Frequency, len(cpus), cfg.DrainInterval)
		if cfg.StackMapBytes > 0 && cfg.CountsEntries == 0 {
			cfg.StackEntries = capEntries(cfg.StackEntries, cfg.StackMapBytes/stackEntryBytes)
			cfg.CountsEntries = min(max(cfg.StackEntries, 16384), 4*cfg.StackEntries)
		}
	}
	if cfg.CountsEntries == 0 {
		cfg.CountsEntries = max(cfg.StackEntries, 16384)
	}
	kinds := cfg.OffCPUKinds
	if kinds == 0 {
		kinds = 0xff
	}
	bcfg := bpf.Config{
		FilterPIDs:      len(cfg.PIDs) > 0 || cfg.FollowForks,
		FollowForks:     cfg.FollowForks,
		PIDEntries:      pidEntries(cfg),
		PIDs:            pidList(cfg.PIDs),
		Cgroups:         cfg.Cgroups,
		IncludeIdle:     cfg.IncludeIdle,
		OnCPU:           cfg.OnCPU,
		OffCPU:          cfg.OffCPU,
		Wakers:          cfg.OffCPU && cfg.Wakers,
		OffCPUThreshold: cfg.OffCPUThreshold,
		OffCPUMin:       cfg.OffCPUMin,
		OffCPUKinds:     kinds,
		NoHotArray:      cfg.OffCPUHotInStorage,
		CountsEntries:   cfg.CountsEntries,
		StackEntries:    cfg.StackEntries,
		KStackEntries:   16384,
		UStackEntries:   65536,
		KnownPIDEntries: cfg.KnownPIDEntries,
		StackCopyBytes:  cmp.Or(cfg.StackCopyBytes, onCPUCopyBytes(cfg, len(cpus))),
		UnwindSizes:     unwindSizes(cfg),
		KernelTypes:     kernelTypes,
		Refuse:          cfg.refuse,

		TableSamplerLater: sampleWhileVerifying(cfg),
	}
	if !cfg.IncludeSelf {
		bcfg.SelfTGID = uint32(os.Getpid())
	}
	// Tables serve off-CPU user stacks too: blocking calls sit in libc,
	// which frame pointers do not cross.
	objs, method, unwind, err := load(cfg, bcfg)
	if err != nil {
		return nil, err
	}
	cfg.OffCPUMethod, cfg.Unwind = method, unwind
	t := &Tracer{cfg: cfg, objs: objs, procs: procs}
	for _, pid := range cfg.PIDs {
		if err := t.addPID(pid); err != nil {
			t.Close()
			return nil, err
		}
	}
	if err := t.attach(cpus); err != nil {
		t.Close()
		return nil, err
	}
	for _, e := range t.cpus {
		if err := enablePerf(e.fd); err != nil {
			t.Close()
			return nil, fmt.Errorf("enable perf event: %w", err)
		}
	}
	t.samplingCPU = cpuTime()
	// The process events of the samples taken meanwhile wait in their ring
	// buffer: the unwinder starts once the walker is known to load, so a
	// refused walker leaves nothing behind but the maps.
	if objs.TableSamplerLater() {
		if err := t.swapInTableWalker(); err != nil {
			t.Close()
			var le *bpf.LoadError
			if !errors.As(err, &le) {
				return nil, err
			}
			// Refused: decide as before, which falls back and says why
			// (or fails, for --unwind tables).
			slog.Debug("the table walker loaded after sampling began was refused; loading again", "err", err)
			given.walkerAtOnce = true
			return Start(given, procs)
		}
	}
	if unwind == UnwindTables {
		t.unw = newUnwinder(objs, procs, bcfg.UnwindSizes, cfg.UnwindCacheBytes)
		if objs.StackCopies != nil {
			if t.copies, err = newStackCopies(t); err != nil {
				t.Close()
				return nil, err
			}
		}
	}
	// A process exec'd from now on is known from its exec, whatever its
	// first sample meets (mmaps.go).
	if t.mmaps, err = newMmapRecorder(cpus, t.applyMmapRecords); err != nil {
		t.Close()
		return nil, err
	}
	if t.copies != nil {
		t.copies.flushMmaps = t.mmaps.flush
	}
	t.rb, err = ringbuf.NewReader(objs.Events)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open process event ring buffer: %w", err)
	}
	t.wg.Add(1)
	go t.followProcesses()
	t.stopWatch, t.watchDone = make(chan struct{}), make(chan struct{})
	go t.watch(t.stopWatch, t.watchDone)
	return t, nil
}

// sampleWhileVerifying says whether to sample with frame pointers while the
// table walker is verified (swapInTableWalker): for a recording of the
// whole machine, whose first second is no different from its others. A
// recording of some processes or cgroups is short and of what the user
// asked to see: it keeps every sample a table walk, and a launched command
// is held until the walker samples anyway.
func sampleWhileVerifying(cfg Config) bool {
	return cfg.OnCPU && !cfg.walkerAtOnce && len(cfg.PIDs) == 0 && !cfg.FollowForks && len(cfg.Cgroups) == 0 && samplerLater()
}

// onCPUCopyBytes sizes the stack-copy ring of an on-CPU tracer given no
// size: one second of every sample on every CPU being a copy (8 KiB each,
// the most there can be), at least the kernel object's 2 MiB, at most 8 MiB;
// 0 (the object's size) with off-CPU blocks, whose copies come at the rate
// threads block. The ring is mapped into Ember (twice: its pages are resident
// at once and count in its RSS), so that record's 8 MiB for off-CPU floods
// cost an on-CPU recording 16 MiB of RSS for copies it cannot take.
func onCPUCopyBytes(cfg Config, cpus int) uint32 {
	if !cfg.OnCPU || cfg.OffCPU {
		return 0
	}
	need := uint64(cfg.Frequency) * uint64(max(cpus, 1)) * (bpf.StackCopyBytes + 64)
	size := uint64(2 << 20)
	for size < need && size < 8<<20 {
		size <<= 1
	}
	return uint32(size)
}

// pidList converts the PIDs to filter for bpf.Config.
func pidList(pids []int) []uint32 {
	out := make([]uint32, len(pids))
	for i, p := range pids {
		out[i] = uint32(p)
	}
	return out
}

// pidEntries sizes the in-kernel PID filter: the PIDs given, or room for
// the live processes of a followed command (bpf.DefaultPIDEntries).
func pidEntries(cfg Config) uint32 {
	n := uint32(len(cfg.PIDs))
	if cfg.FollowForks {
		// A power of 2: the kernel rounds the buckets up to one.
		n = max(n, bpf.DefaultPIDEntries)
	}
	return max(n, 1)
}

// stackEntries sizes a stack-trace map: two stacks per sample for every
// sample one drain interval can take, times 8 so that bucket collisions stay
// rare (a stack-trace map is a hash table without chaining), as a power of 2.
func stackEntries(hz, cpus int, interval time.Duration) uint32 {
	n := uint64(hz) * uint64(cpus) * uint64(interval.Seconds()+1) * 2 * 8
	size := uint32(4096)
	for uint64(size) < n && size < 1<<20 {
		size <<= 1
	}
	return size
}

func (t *Tracer) attach(cpus []int) error {
	o := t.objs
	for _, p := range []struct {
		prog *ebpf.Program
		what string
	}{
		{o.FollowFork, "sched_process_fork"},
		{o.ProcessExec, "sched_process_exec"},
		{o.ProcessExit, "sched_process_exit"},
		{o.OffCPUSwitch, "sched_switch"},
		{o.OffCPUSysExit, "sys_exit"},
		{o.OffCPUWaking, "sched_waking"},
	} {
		if p.prog == nil {
			continue
		}
		var l link.Link
		var err error
		if o.RawTracepoints {
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: p.what, Program: p.prog})
		} else {
			l, err = link.AttachTracing(link.TracingOptions{Program: p.prog})
		}
		if err != nil {
			return fmt.Errorf("attach to the %s tracepoint: %w", p.what, err)
		}
		t.links = append(t.links, l)
	}
	if o.OnCPUSample != nil {
		t.cpus = make(map[int]*cpuEvent, len(cpus))
		for _, cpu := range cpus {
			fd, err := openCPUClock(cpu, t.cfg.Frequency, o.OnCPUSample)
			if err != nil {
				return err
			}
			t.cpus[cpu] = &cpuEvent{fd: fd}
		}
	}
	return nil
}

// OffCPUMethod returns the off-CPU method in use, and whether blocks are
// timed with the runqueue clock (else bpf_ktime_get_ns).
func (t *Tracer) OffCPUMethod() (m OffCPUMethod, rqClock bool) {
	return t.cfg.OffCPUMethod, t.objs.RQClock
}

// addPID adds a process to the in-kernel filter; only before the programs
// are attached, since its pid_hint byte is set at load (bpf.Config.PIDs).
func (t *Tracer) addPID(pid int) error {
	if err := t.objs.PIDs.Put(uint32(pid), uint8(1)); err != nil {
		return fmt.Errorf("add pid %d to the filter: %w", pid, err)
	}
	return nil
}

// followProcesses reads new-process, exec and exit events and keeps the
// process table current, so mappings are read while processes live.
func (t *Tracer) followProcesses() {
	defer t.wg.Done()
	var rec ringbuf.Record
	for {
		if err := t.rb.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			slog.Debug("read process events", "err", err)
			continue
		}
		var ev bpf.Event
		if _, err := binary.Decode(rec.RawSample, binary.NativeEndian, &ev); err != nil {
			slog.Debug("decode process event", "err", err)
			continue
		}
		pid := int(ev.Pid)
		if testHookDropEvent != nil && testHookDropEvent(ev.Type, pid) {
			continue
		}
		switch ev.Type {
		case bpf.EventNewProcess, bpf.EventExec, bpf.EventMapsChanged:
			if ev.Type != bpf.EventMapsChanged && t.procs.Recorded(pid) {
				// Known from its exec by its mmap records (mmaps.go).
				if t.unw != nil {
					t.unw.enqueue(uint32(pid), false)
				}
			} else if _, err := t.procs.Add(pid); err != nil {
				slog.Debug("read process", "pid", pid, "err", err)
			} else if t.unw != nil {
				t.unw.enqueue(uint32(pid), false)
			}
		case bpf.EventExit:
			// Its last samples may still be in the live maps: the process
			// is marked exited once a drain has read them (Drain).
			t.exitMu.Lock()
			t.exits = append(t.exits, pid)
			t.exitMu.Unlock()
			if t.unw != nil {
				t.unw.enqueue(uint32(pid), true)
			}
		}
	}
}

// Close detaches and unloads everything.
func (t *Tracer) Close() error {
	if t.stopWatch != nil {
		close(t.stopWatch)
		<-t.watchDone
		t.stopWatch = nil
	}
	for _, e := range t.cpus {
		unix.Close(e.fd)
	}
	t.cpus = nil
	for _, l := range t.links {
		l.Close()
	}
	t.links = nil
	if t.rb != nil {
		t.rb.Close()
		t.wg.Wait()
		t.rb = nil
	}
	// The records first: applying them reaches the copies and the
	// unwinder, and the copies' walker flushes them (a no-op once closed).
	t.mmaps.close()
	t.mmaps = nil
	if t.copies != nil {
		t.copies.close()
		t.copies = nil
	}
	if t.unw != nil {
		t.unw.close()
		t.unw = nil
	}
	if t.objs != nil {
		t.objs.Close()
		t.objs = nil
	}
	return nil
}

// UnwindMode returns how on-CPU user stacks are walked.
func (t *Tracer) UnwindMode() UnwindMode { return t.cfg.Unwind }

// UnwindStats describes the unwind tables loaded; ok is false when user
// stacks are walked with frame pointers only.
func (t *Tracer) UnwindStats() (s UnwindStats, ok bool) {
	if t.unw == nil {
		return s, false
	}
	return t.unw.Stats(), true
}

// FirstSample returns CLOCK_MONOTONIC of the first on-CPU sample taken, or
// zero when none was.
func (t *Tracer) FirstSample() time.Duration {
	return time.Duration(t.objs.FirstSampleNS())
}

// ProgramStats is the kernel's accounting of one BPF program (only counted
// while EnableProgramStats is in effect).
type ProgramStats struct {
	Name    string
	RunTime time.Duration
	Runs    uint64
}

// ProgramStats returns run time and run count of every loaded program.
func (t *Tracer) ProgramStats() []ProgramStats {
	var out []ProgramStats
	for name, p := range t.objs.Programs() {
		st, err := p.Stats()
		if err != nil {
			continue
		}
		out = append(out, ProgramStats{Name: name, RunTime: st.Runtime, Runs: st.RunCount})
	}
	return out
}

// EnableProgramStats turns on the kernel's BPF run-time accounting
// (kernel.bpf_stats_enabled) until the returned closer is closed. It costs a
// clock read per program run, so it is off unless asked for.
func EnableProgramStats() (io.Closer, error) {
	c, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable BPF program stats: %w", err)
	}
	return c, nil
}

// MapMemory is the kernel memory one BPF map holds.
type MapMemory = bpf.MapMemory

// MapMemory returns the kernel memory of every loaded map, largest first.
func (t *Tracer) MapMemory() ([]MapMemory, error) {
	m, err := t.objs.MapMemory()
	if err != nil {
		return nil, fmt.Errorf("kernel memory of the BPF maps: %w", err)
	}
	return m, nil
}

// MissedExits returns how many processes were found gone though no exit
// event said so (the kernel counts the events it could not send as
// events_lost); they were treated as exited.
func (t *Tracer) MissedExits() uint64 { return t.missedExits.Load() }

// Recoveries returns, by reason, how often the tracer made up for
// something its inputs missed or could not give: missed_exit (a process
// found gone without an exit event), cpu_online (a CPU event opened for a
// CPU brought online after start), unwind_entry_swept (an unwind entry of
// a process gone without an exit job), bad_binary (a binary whose reading
// panicked, walked with frame pointers), worker_panic (a table job that
// panicked outside any one file). No sample is lost by these, so they are
// not in Stats, whose keys count samples.
func (t *Tracer) Recoveries() map[string]uint64 {
	out := map[string]uint64{
		"missed_exit":        t.missedExits.Load(),
		"cpu_online":         t.cpusOpened.Load(),
		"unwind_entry_swept": 0,
		"bad_binary":         0,
		"worker_panic":       0,
	}
	if us, ok := t.UnwindStats(); ok {
		out["unwind_entry_swept"] = uint64(us.Swept)
		out["bad_binary"] = uint64(us.BadBinaries)
		out["worker_panic"] = uint64(us.Recovered)
	}
	return out
}

// Stats returns the kernel-side counters summed over CPUs, by name.
func (t *Tracer) Stats() (map[string]uint64, error) {
	out := make(map[string]uint64, len(bpf.StatNames))
	for i, name := range bpf.StatNames {
		var perCPU []uint64
		if err := t.objs.Stats.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read stats: %w", err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		out[name] = sum
	}
	out["drain_stack_lookup_failed"] = t.drainLookupFailed.Load()
	out["unwind_fp_fallback"] = t.fpFallbacks.Load()
	out["unwind_stack_copy_not_walked"] = 0
	t.copies.addStats(out)
	return out, nil
}
