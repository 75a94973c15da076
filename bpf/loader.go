package bpf

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

// The wire types shared with the kernel, generated from ember.h.
type (
	SampleKey   = emberSampleKey
	SampleValue = emberSampleValue
	Event       = emberEvent
	KStack      = emberKstack
	UStack      = emberUstack
)

// Sample kinds (enum sample_kind in ember.h).
const (
	KindOnCPU       = uint32(emberSampleKindKIND_ONCPU)
	KindOffCPUSleep = uint32(emberSampleKindKIND_OFFCPU_SLEEP)
	KindOffCPUDisk  = uint32(emberSampleKindKIND_OFFCPU_DISK)
	KindOffCPURunQ  = uint32(emberSampleKindKIND_OFFCPU_RUNQ)
	KindOffCPUOther = uint32(emberSampleKindKIND_OFFCPU_OTHER)
)

// Event types (enum event_type in ember.h).
const (
	EventNewProcess = uint32(emberEventTypeEVENT_NEW_PROCESS)
	EventExec       = uint32(emberEventTypeEVENT_EXEC)
	EventExit       = uint32(emberEventTypeEVENT_EXIT)
)

// StatNames names the per-CPU stats counters, indexed as enum stat.
var StatNames = [...]string{
	emberStatSTAT_SAMPLES:              "samples",
	emberStatSTAT_USTACK_EEXIST:        "user_stack_collision",
	emberStatSTAT_USTACK_EFAULT:        "user_stack_fault",
	emberStatSTAT_USTACK_ENOMEM:        "user_stack_map_full",
	emberStatSTAT_USTACK_OTHER:         "user_stack_other",
	emberStatSTAT_KSTACK_EEXIST:        "kernel_stack_collision",
	emberStatSTAT_KSTACK_EFAULT:        "kernel_stack_none",
	emberStatSTAT_KSTACK_ENOMEM:        "kernel_stack_map_full",
	emberStatSTAT_KSTACK_OTHER:         "kernel_stack_other",
	emberStatSTAT_COUNTS_FULL:          "counts_map_full",
	emberStatSTAT_EVENTS_LOST:          "process_events_lost",
	emberStatSTAT_OFFCPU_BLOCKS:        "offcpu_blocks",
	emberStatSTAT_OFFCPU_KEPT:          "offcpu_blocks_kept",
	emberStatSTAT_OFFCPU_STORAGE_FULL:  "offcpu_storage_full",
	emberStatSTAT_OFFCPU_STALE:         "offcpu_stack_stale",
	emberStatSTAT_OFFCPU_KSTACK_FULL:   "offcpu_kernel_stack_map_full",
	emberStatSTAT_OFFCPU_KSTACK_EFAULT: "offcpu_kernel_stack_fault",
	emberStatSTAT_OFFCPU_USTACK_FULL:   "offcpu_user_stack_map_full",
	emberStatSTAT_OFFCPU_USTACK_EFAULT: "offcpu_user_stack_fault",
}

// MaxKStackDepth is the depth of the off-CPU kernel stacks (MAX_KSTACK_DEPTH).
const MaxKStackDepth = len(emberKstack{}.Ips)

// Config is what is fixed when the programs are loaded.
type Config struct {
	SelfTGID    uint32 // the profiler's own process, excluded
	FilterPIDs  bool   // only processes in the pids map
	FollowForks bool   // add children of filtered processes to the pids map
	CgroupID    uint64 // only this cgroup v2 (0: any)
	IncludeIdle bool   // count the idle task

	OnCPU  bool // load the perf_event program
	OffCPU bool // load the sched_switch and sys_exit programs

	OffCPUThreshold time.Duration // T of duration-weighted sampling
	OffCPUMin       time.Duration // blocks shorter are dropped
	OffCPUKinds     uint32        // bit (1 << kind) per kept kind

	CountsEntries uint32 // per counts map (x2)
	StackEntries  uint32 // per stack-trace map (x2)
	KStackEntries uint32 // per off-CPU kernel stack map (x2)
	UStackEntries uint32 // per off-CPU user stack map (x2)
}

// Objects are the loaded maps and programs. Programs not asked for are nil.
type Objects struct {
	ActiveSet     *ebpf.Map
	Counts        [2]*ebpf.Map
	Stacks        [2]*ebpf.Map
	OffCPUKStacks [2]*ebpf.Map
	OffCPUUStacks [2]*ebpf.Map
	Stats         *ebpf.Map
	PIDs          *ebpf.Map
	KnownPIDs     *ebpf.Map
	Events        *ebpf.Map

	OnCPUSample   *ebpf.Program
	OffCPUSwitch  *ebpf.Program
	OffCPUSysExit *ebpf.Program
	FollowFork    *ebpf.Program
	ProcessExec   *ebpf.Program
	ProcessExit   *ebpf.Program

	coll *ebpf.Collection
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

// Load loads the programs cfg asks for into the kernel.
func Load(cfg Config) (*Objects, error) {
	spec, err := loadEmber()
	if err != nil {
		return nil, fmt.Errorf("parse embedded BPF object: %w", err)
	}
	vars := map[string]any{
		"self_tgid":           cfg.SelfTGID,
		"filter_pids":         cfg.FilterPIDs,
		"follow_forks":        cfg.FollowForks,
		"filter_cgroup":       cfg.CgroupID,
		"include_idle":        cfg.IncludeIdle,
		"offcpu_threshold_ns": uint64(cfg.OffCPUThreshold.Nanoseconds()),
		"offcpu_min_ns":       uint64(cfg.OffCPUMin.Nanoseconds()),
		"offcpu_kinds":        cfg.OffCPUKinds,
	}
	for name, v := range vars {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	resize := func(entries uint32, names ...string) {
		if entries == 0 {
			return
		}
		for _, n := range names {
			spec.Maps[n].MaxEntries = entries
		}
	}
	resize(cfg.CountsEntries, "counts0", "counts1")
	resize(cfg.StackEntries, "stacks0", "stacks1")
	resize(cfg.KStackEntries, "offcpu_kstacks0", "offcpu_kstacks1")
	resize(cfg.UStackEntries, "offcpu_ustacks0", "offcpu_ustacks1")

	want := map[string]bool{"follow_fork": true, "process_exec": true, "process_exit": true}
	if cfg.OnCPU {
		want["on_cpu_sample"] = true
	}
	if cfg.OffCPU {
		want["offcpu_switch"] = true
		want["offcpu_sys_exit"] = true
	}
	for name := range spec.Programs {
		if !want[name] {
			delete(spec.Programs, name)
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load BPF programs: %w (verifier log: %+v)", err, verr)
		}
		return nil, fmt.Errorf("load BPF programs: %w", err)
	}
	o := &Objects{
		ActiveSet:     coll.Maps["active_set"],
		Counts:        [2]*ebpf.Map{coll.Maps["counts0"], coll.Maps["counts1"]},
		Stacks:        [2]*ebpf.Map{coll.Maps["stacks0"], coll.Maps["stacks1"]},
		OffCPUKStacks: [2]*ebpf.Map{coll.Maps["offcpu_kstacks0"], coll.Maps["offcpu_kstacks1"]},
		OffCPUUStacks: [2]*ebpf.Map{coll.Maps["offcpu_ustacks0"], coll.Maps["offcpu_ustacks1"]},
		Stats:         coll.Maps["stats"],
		PIDs:          coll.Maps["pids"],
		KnownPIDs:     coll.Maps["known_pids"],
		Events:        coll.Maps["events"],
		OnCPUSample:   coll.Programs["on_cpu_sample"],
		OffCPUSwitch:  coll.Programs["offcpu_switch"],
		OffCPUSysExit: coll.Programs["offcpu_sys_exit"],
		FollowFork:    coll.Programs["follow_fork"],
		ProcessExec:   coll.Programs["process_exec"],
		ProcessExit:   coll.Programs["process_exit"],
		coll:          coll,
	}
	return o, nil
}

// Close releases every map and program.
func (o *Objects) Close() error {
	o.coll.Close()
	return nil
}
