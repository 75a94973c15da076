package bpf

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Config is what is fixed when the programs are loaded.
type Config struct {
	SelfTGID    uint32 // the profiler's own process, excluded
	FilterPIDs  bool   // only processes in the pids map
	FollowForks bool   // add children of filtered processes to the pids map
	// PIDEntries is the capacity of the pids map with FilterPIDs: the PIDs
	// given, or how many processes a followed command may have at once.
	// 0: DefaultPIDEntries.
	PIDEntries uint32
	// PIDs are the processes that will be put in the pids map before the
	// programs are attached: their pid_hint bytes are set at load.
	PIDs []uint32
	// Cgroups are cgroup v2 directories: only tasks in their subtrees are
	// profiled (none: any). At most MaxCgroups.
	Cgroups     []string
	IncludeIdle bool // count the idle task

	OnCPU  bool // load the perf_event program
	OffCPU bool // load the sched_switch program (and sys_exit without task_work)
	// Wakers loads the sched_waking program, which takes the waker's stacks
	// for kept blocks (offcpu.bpf.h); blocks are then timed with
	// bpf_ktime_get_ns, the clock the wakeup can read.
	Wakers bool

	// Hook says which variant of the tracepoint programs to load. HookRaw
	// also loads the process tracepoints as raw_tp programs.
	Hook Hook
	// NoHotArray keeps the hot per-thread off-CPU records in task storage
	// (raw_tp: the thread hash), as where pid_max is above 2^20.
	NoHotArray bool

	OffCPUThreshold time.Duration // T of duration-weighted sampling
	OffCPUMin       time.Duration // blocks shorter are dropped
	OffCPUKinds     uint32        // bit (1 << kind) per kept kind

	CountsEntries uint32 // per counts map (x2)
	StackEntries  uint32 // per stack-trace map (x2)
	KStackEntries uint32 // per off-CPU kernel stack map (x2)
	UStackEntries uint32 // per user stack map (x2): off-CPU stacks, table walks
	// KnownPIDEntries sizes known_pids, the processes announced to user
	// space (an LRU: one evicted is announced again); 0: 32768.
	KnownPIDEntries uint32
	// StackCopyBytes sizes the stack_copies ring (a power of 2 of at least
	// a page); 0: 2 MiB.
	StackCopyBytes uint32

	// UnwindTables loads the program variants that walk user stacks with
	// the unwind tables user space loads into the Unwind* maps, for
	// processes that have an unwind_procs entry (other stacks use frame
	// pointers); without it, the _fp variants, which need no bpf_loop.
	UnwindTables bool
	UnwindSizes  UnwindSizes // 0 fields: defaults
	// TableSamplerLater (with OnCPU and UnwindTables) loads the on-CPU
	// program that walks with frame pointers in place of the table walker,
	// which Objects.LoadTableSampler loads afterwards (staged.go).
	TableSamplerLater bool

	// KernelTypes is the kernel's BTF for CO-RE relocations when it is not
	// at /sys/kernel/btf/vmlinux (--btf); nil: the kernel's own.
	KernelTypes *btf.Spec

	// Refuse names programs to load as a body the verifier refuses (it
	// reads an uninitialised register): for tests of the fallbacks.
	Refuse []string
}

// Hook is how the off-CPU programs learn where a kept block's thread is in
// user space (enum offcpu_hook in offcpu.bpf.h).
type Hook int

const (
	// HookSysExit: tp_btf sched_switch and sys_exit (Linux 5.11).
	HookSysExit Hook = iota
	// HookRaw: raw_tp programs for every tracepoint, per-thread records in
	// a hash map, a kernel stack walk at every switch-out (Linux 5.10).
	HookRaw
	// HookTaskWork: a bpf_task_work callback queued through
	// bpf_task_work_schedule_resume (Linux 6.19 on).
	HookTaskWork
	// HookTaskWorkImpl: the same through Linux 6.18's
	// bpf_task_work_schedule_resume_impl.
	HookTaskWorkImpl
)

func (h Hook) String() string {
	switch h {
	case HookSysExit:
		return "sys-exit"
	case HookRaw:
		return "raw-tp"
	case HookTaskWork:
		return "task-work"
	case HookTaskWorkImpl:
		return "task-work (6.18 kfunc)"
	}
	return fmt.Sprintf("Hook(%d)", int(h))
}

// programs returns the names of the programs cfg loads, by role.
func (cfg Config) programs() (onCPU, offSwitch, offSysExit, offWaking, fork, exec, exit string) {
	sfx := ""
	if !cfg.UnwindTables {
		sfx = "_fp"
	}
	raw := ""
	if cfg.Hook == HookRaw {
		raw = "_raw"
	}
	fork, exec, exit = "follow_fork"+raw, "process_exec"+raw, "process_exit"+raw
	if cfg.OnCPU {
		onCPU = "on_cpu_sample" + sfx
	}
	if !cfg.OffCPU {
		return
	}
	switch cfg.Hook {
	case HookTaskWork:
		offSwitch = "offcpu_switch_tw" + sfx
	case HookTaskWorkImpl:
		offSwitch = "offcpu_switch_tw_impl" + sfx
	default:
		offSwitch = "offcpu_switch" + raw + sfx
		offSysExit = "offcpu_sys_exit" + raw + sfx
	}
	if cfg.Wakers {
		offWaking = "offcpu_waking" + raw + sfx
	}
	return
}

// UnwindSizes are the entries of the unwind table maps.
type UnwindSizes struct {
	Rows, Rules, Pages, Tables, Procs uint32
}

// DefaultUnwindSizes hold the tables of clang-19 (libclang-cpp and libLLVM,
// 2.6M rows) with room to spare, or libc's (28k rows) 100 times. Array
// values are 8-byte aligned in the kernel, so a 4-byte row takes 8 bytes:
// 24 MiB of rows. Tables no process uses are evicted when space runs out.
var DefaultUnwindSizes = UnwindSizes{Rows: 3 << 20, Rules: 1 << 16, Pages: 1 << 15, Tables: 4096, Procs: 8192}

// Objects are the loaded maps and programs. Programs not asked for are nil.
type Objects struct {
	ActiveSet     *ebpf.Map
	Counts        [2]*ebpf.Map
	Stacks        [2]*ebpf.Map
	OffCPUKStacks [2]*ebpf.Map
	HashedUStacks [2]*ebpf.Map // by hash: off-CPU user stacks and every table walk
	Stats         *ebpf.Map
	PIDs          *ebpf.Map
	KnownPIDs     *ebpf.Map
	Events        *ebpf.Map
	// OffCPUHot holds each thread's hot off-CPU record (struct offcpu_hot,
	// thread.bpf.h) by thread ID when HotByTID: 16 bytes (the map's value
	// size), whose first 8 are the start of the block in progress.
	OffCPUHot *ebpf.Map
	HotByTID  bool

	// The unwind tables (unwind/doc.go); nil unless Config.UnwindTables,
	// and until LoadTableSampler where the walker is loaded later.
	UnwindRows, UnwindRules, UnwindPages, UnwindTables, UnwindProcs *ebpf.Map
	// StackCopies is the ring buffer of user stacks copied for processes
	// whose tables are not loaded yet (stackcopy.bpf.h; records as
	// internal/tracer/stackcopy.go reads them); nil as the unwind maps.
	StackCopies *ebpf.Map

	OnCPUSample   *ebpf.Program
	OffCPUSwitch  *ebpf.Program
	OffCPUSysExit *ebpf.Program
	OffCPUWaking  *ebpf.Program
	FollowFork    *ebpf.Program
	ProcessExec   *ebpf.Program
	ProcessExit   *ebpf.Program

	// RawTracepoints says the tracepoint programs are raw_tp ones.
	RawTracepoints bool
	// TaskWork says off-CPU user stacks are taken by a task_work callback,
	// and no sys_exit program is loaded.
	TaskWork bool
	// RQClock says off-CPU blocks are timed with the runqueue clock.
	RQClock bool

	coll  *ebpf.Collection
	later *laterSampler // the on-CPU program LoadTableSampler loads
}

// FirstSampleNS returns CLOCK_MONOTONIC of the first on-CPU sample, 0 if none.
func (o *Objects) FirstSampleNS() uint64 {
	var v uint64
	if vr := o.coll.Variables["first_sample_ns"]; vr != nil {
		_ = vr.Get(&v)
	}
	return v
}

// Programs returns the loaded programs by name.
func (o *Objects) Programs() map[string]*ebpf.Program { return o.coll.Programs }

// spec returns the object's spec prepared for cfg: its variables set, its
// maps sized, only the programs cfg loads, and the maps they use.
func (cfg Config) spec() (*ebpf.CollectionSpec, error) {
	if len(cfg.Cgroups) > MaxCgroups {
		return nil, fmt.Errorf("%d cgroups to profile: at most %d", len(cfg.Cgroups), MaxCgroups)
	}
	if cfg.OffCPUThreshold >= 1<<32 {
		return nil, fmt.Errorf("the off-CPU sampling threshold %v is too long: at most %v", cfg.OffCPUThreshold, time.Duration(1<<32-1))
	}
	parsed, err := parsedEmber()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	onCPU, offSwitch, offSysExit, offWaking, fork, exec, exit := cfg.programs()
	want := map[string]bool{onCPU: true, offSwitch: true, offSysExit: true, offWaking: true, fork: true, exec: true, exit: true}
	if cfg.deferring() {
		want[onCPU+"_fp"] = true // sampling until the walker loads (staged.go)
	}
	spec := copyPrograms(parsed, want)
	raw := cfg.Hook == HookRaw
	rqClock := cfg.OffCPU && !raw && !cfg.Wakers && SchedClockGlobal()
	// The hot off-CPU records in an array indexed by thread ID: 16 bytes
	// per possible thread, where that stays under 16 MiB.
	pm := pidMax()
	hotByTID := cfg.OffCPU && !cfg.NoHotArray && pm > 0 && pm <= maxHotTIDs
	vars := map[string]any{
		"self_tgid":           cfg.SelfTGID,
		"filter_pids":         cfg.FilterPIDs,
		"follow_forks":        cfg.FollowForks,
		"filter_cgroups":      uint32(len(cfg.Cgroups)),
		"include_idle":        cfg.IncludeIdle,
		"offcpu_threshold_ns": uint64(cfg.OffCPUThreshold.Nanoseconds()),
		"offcpu_min_ns":       uint64(cfg.OffCPUMin.Nanoseconds()),
		"offcpu_kinds":        cfg.OffCPUKinds,
		"rq_clock":            rqClock,
		"hot_by_tid":          hotByTID,
	}
	for name, v := range vars {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	if err := setPIDHints(spec, cfg.PIDs); err != nil {
		return nil, err
	}
	resize := func(entries uint32, names ...string) {
		if entries == 0 {
			return
		}
		for _, n := range names {
			spec.Maps[n].MaxEntries = entries
		}
	}
	if cfg.FilterPIDs {
		resize(cmp.Or(cfg.PIDEntries, DefaultPIDEntries), "pids")
	} else {
		resize(1, "pids") // unused
	}
	if hotByTID {
		resize(pm, "offcpu_hot")
	}
	resize(cfg.CountsEntries, "counts0", "counts1")
	resize(cfg.StackEntries, "stacks0", "stacks1")
	if cfg.OffCPU {
		resize(cfg.KStackEntries, "offcpu_kstacks0", "offcpu_kstacks1")
	} else {
		resize(1, "offcpu_kstacks0", "offcpu_kstacks1") // off-CPU only
	}
	resize(cfg.UStackEntries, "hashed_ustacks0", "hashed_ustacks1")
	resize(cfg.KnownPIDEntries, "known_pids")
	if cfg.UnwindTables {
		resize(cfg.StackCopyBytes, "stack_copies")
		us, def := cfg.UnwindSizes, DefaultUnwindSizes
		resize(cmp.Or(us.Rows, def.Rows), "unwind_rows")
		resize(cmp.Or(us.Rules, def.Rules), "unwind_rules")
		resize(cmp.Or(us.Pages, def.Pages), "unwind_pages")
		resize(cmp.Or(us.Tables, def.Tables), "unwind_tables")
		resize(cmp.Or(us.Procs, def.Procs), "unwind_procs")
	} else {
		// Stacks are copied only for the table walker (stackcopy.bpf.h).
		resize(uint32(os.Getpagesize()), "stack_copies")
	}

	for _, name := range cfg.Refuse {
		if p := spec.Programs[name]; p != nil {
			bad := asm.Instructions{asm.Mov.Reg(asm.R0, asm.R2), asm.Return()}
			bad[0].Metadata = p.Instructions[0].Metadata
			p.Instructions = bad
		}
	}
	pruneMaps(spec)
	if preallocRequired() {
		preallocate(spec)
	}
	return spec, nil
}

// copyPrograms copies spec with only the programs named in want: a copy of
// every program of the object (24, the table walker's the largest) cost a
// start about 20 ms of CPU before its first sample for programs it never
// loads.
func copyPrograms(spec *ebpf.CollectionSpec, want map[string]bool) *ebpf.CollectionSpec {
	some := *spec
	some.Programs = make(map[string]*ebpf.ProgramSpec, len(want))
	for name, p := range spec.Programs {
		if want[name] {
			some.Programs[name] = p
		}
	}
	return some.Copy()
}

// parsedEmber returns the embedded object, parsed once (until
// ReleaseCaches): spec copies it, so that probes and the load that follows
// them do not parse it again.
func parsedEmber() (*ebpf.CollectionSpec, error) {
	caches.mu.Lock()
	defer caches.mu.Unlock()
	if caches.parsed == nil && caches.parseErr == nil {
		caches.parsed, caches.parseErr = loadEmber()
	}
	return caches.parsed, caches.parseErr
}

// caches are what loading keeps for the next load: the parsed object and
// the kernel's decoded BTF.
var caches struct {
	mu       sync.Mutex
	parsed   *ebpf.CollectionSpec
	parseErr error
	// kernelBTF holds the kernel's BTF, decoded once and shared by every
	// load (probes, the load, a reload): cilium/ebpf decodes it afresh
	// for each collection otherwise (for tp_btf targets, kfuncs and
	// CO-RE), 15-40 ms each time on this machine. It is made on first
	// use, on the heap: initialised in this declaration, the compiler
	// placed the first cache in the binary's .bss, a GC root for ever, so
	// that the kernel's decoded types (3.5 MiB of Go heap) outlived
	// ReleaseCaches, the agent's whole run.
	kernelBTF *btf.Cache
}

// ReleaseCaches drops the parsed object and the kernel's decoded BTF, about
// 6 MiB of Go heap that a process loading once (the agent, once started)
// would keep for nothing; a later load parses and decodes them again.
func ReleaseCaches() {
	caches.mu.Lock()
	defer caches.mu.Unlock()
	caches.parsed, caches.parseErr = nil, nil
	caches.kernelBTF = nil
}

// ObjectHash identifies the embedded BPF object (a SHA-256 of its bytes):
// what a kernel accepted of one build of Ember's programs says nothing of
// another's.
var ObjectHash = sync.OnceValue(func() [32]byte { return sha256.Sum256(_EmberBytes) })

// collectionOptions are the options of every collection cfg loads.
func (cfg Config) collectionOptions() ebpf.CollectionOptions {
	caches.mu.Lock()
	defer caches.mu.Unlock()
	if caches.kernelBTF == nil {
		caches.kernelBTF = btf.NewCache()
	}
	return ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: cfg.KernelTypes},
		Cache:    caches.kernelBTF,
	}
}

// Load loads the programs cfg asks for into the kernel.
func Load(cfg Config) (*Objects, error) {
	spec, err := cfg.spec()
	if err != nil {
		return nil, err
	}
	onCPU, offSwitch, offSysExit, offWaking, fork, exec, exit := cfg.programs()
	raw := cfg.Hook == HookRaw
	tw := cfg.OffCPU && (cfg.Hook == HookTaskWork || cfg.Hook == HookTaskWorkImpl)
	rqClock := cfg.OffCPU && !raw && !cfg.Wakers && SchedClockGlobal()
	later, err := cfg.deferTableSampler(spec)
	if err != nil {
		return nil, err
	}
	if later != nil {
		onCPU += "_fp"
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, cfg.collectionOptions())
	if err != nil {
		return nil, newLoadError(spec, err)
	}
	o := &Objects{
		ActiveSet:     coll.Maps["active_set"],
		Counts:        [2]*ebpf.Map{coll.Maps["counts0"], coll.Maps["counts1"]},
		Stacks:        [2]*ebpf.Map{coll.Maps["stacks0"], coll.Maps["stacks1"]},
		OffCPUKStacks: [2]*ebpf.Map{coll.Maps["offcpu_kstacks0"], coll.Maps["offcpu_kstacks1"]},
		HashedUStacks: [2]*ebpf.Map{coll.Maps["hashed_ustacks0"], coll.Maps["hashed_ustacks1"]},
		Stats:         coll.Maps["stats"],
		PIDs:          coll.Maps["pids"],
		KnownPIDs:     coll.Maps["known_pids"],
		Events:        coll.Maps["events"],
		OffCPUHot:     coll.Maps["offcpu_hot"],
		OnCPUSample:   coll.Programs[onCPU],
		OffCPUSwitch:  coll.Programs[offSwitch],
		OffCPUSysExit: coll.Programs[offSysExit],
		OffCPUWaking:  coll.Programs[offWaking],
		FollowFork:    coll.Programs[fork],
		ProcessExec:   coll.Programs[exec],
		ProcessExit:   coll.Programs[exit],
		coll:          coll,
		later:         later,

		RawTracepoints: raw,
		TaskWork:       tw,
		RQClock:        rqClock,
	}
	if v := coll.Variables["hot_by_tid"]; v != nil {
		_ = v.Get(&o.HotByTID)
	}
	if err := fillCgroups(coll.Maps["cgroups"], cfg.Cgroups); err != nil {
		coll.Close()
		return nil, err
	}
	if cfg.UnwindTables {
		o.setUnwindMaps()
	}
	return o, nil
}

// setUnwindMaps names the table walker's maps the collection holds; those a
// deferred walker uses alone are nil until LoadTableSampler.
func (o *Objects) setUnwindMaps() {
	m := o.coll.Maps
	o.UnwindRows, o.UnwindRules = m["unwind_rows"], m["unwind_rules"]
	o.UnwindPages, o.UnwindTables = m["unwind_pages"], m["unwind_tables"]
	o.UnwindProcs = m["unwind_procs"]
	o.StackCopies = m["stack_copies"]
}

// MaxCgroups is the number of cgroup subtrees one load can filter on
// (MAX_CGROUPS in ember.bpf.c).
const MaxCgroups = 16

// fillCgroups puts a descriptor of each cgroup directory into the cgroup
// array. The map holds a reference to each cgroup, so the descriptors are
// closed at once; a cgroup removed later simply matches no task.
func fillCgroups(m *ebpf.Map, dirs []string) error {
	if len(dirs) == 0 {
		return nil
	}
	if m == nil {
		return fmt.Errorf("no cgroup array in the loaded object")
	}
	for i, dir := range dirs {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open cgroup %s: %w", dir, err)
		}
		err = m.Put(uint32(i), uint32(fd))
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("add cgroup %s to the filter: %w", dir, err)
		}
	}
	return nil
}

// maxHotTIDs bounds the offcpu_hot array (16 bytes an entry).
const maxHotTIDs = 1 << 20

// DefaultPIDEntries is the capacity of the pids map for a followed command:
// live processes at once, not processes over its life (exits leave). About
// 330 KiB, preallocated.
const DefaultPIDEntries = 4096

// pidMax sizes the offcpu_hot array: one entry per possible thread ID
// (kernel.pid_max), or 0 (the object's default) when it cannot be read.
func pidMax() uint32 {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}

// SchedClockGlobal reports whether the scheduler's clock reads the same on
// every CPU, so that a block can start on one CPU's runqueue clock and end on
// another's: on arm64 it is the architected timer; on x86 it is the TSC,
// trusted only while the kernel keeps the TSC as its clocksource (it drops
// it, and marks sched_clock unstable, when the TSC misbehaves).
func SchedClockGlobal() bool {
	switch runtime.GOARCH {
	case "arm64":
		return true
	case "amd64":
		b, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
		return err == nil && strings.TrimSpace(string(b)) == "tsc"
	}
	return false
}

// Close releases every map and program.
func (o *Objects) Close() error {
	o.coll.Close()
	return nil
}
