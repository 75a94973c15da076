package tracer

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"

	"github.com/emberprof/ember/bpf"
)

// OffCPUMethod says how the kernel side hooks the scheduler and takes the
// user stacks of kept off-CPU blocks (bpf/offcpu.bpf.h).
type OffCPUMethod string

const (
	// MethodAuto picks the cheapest method the kernel supports.
	MethodAuto OffCPUMethod = ""
	// MethodTaskWork: tp_btf/sched_switch, and a bpf_task_work callback
	// (Linux 6.18) takes a kept block's user stack on the thread's way back
	// to user mode. Nothing runs on system calls.
	MethodTaskWork OffCPUMethod = "task-work"
	// MethodSysExit: tp_btf/sched_switch and tp_btf/sys_exit, which runs on
	// every system call of every thread (Linux 5.11).
	MethodSysExit OffCPUMethod = "sys-exit"
	// MethodRawTP: raw_tp programs for kernels without tp_btf; per-thread
	// records in a hash map and a kernel stack walk at every switch-out.
	MethodRawTP OffCPUMethod = "raw-tp"
)

// ParseOffCPUMethod parses the --offcpu-method flag.
func ParseOffCPUMethod(s string) (OffCPUMethod, error) {
	switch m := OffCPUMethod(s); m {
	case "auto":
		return MethodAuto, nil
	case MethodAuto, MethodTaskWork, MethodSysExit, MethodRawTP:
		return m, nil
	}
	return "", fmt.Errorf("unknown off-CPU method %q: want auto, task-work, sys-exit or raw-tp", s)
}

// probeFeatures checks the kernel features the asked-for programs need, so
// that a missing one is named in a sentence instead of a verifier log, and
// resolves the off-CPU method (which also decides between tp_btf and raw_tp
// programs for the process tracepoints).
func probeFeatures(onCPU, offCPU bool, m OffCPUMethod) (OffCPUMethod, error) {
	type probe struct {
		what string
		err  error
	}
	var probes []probe
	if onCPU {
		probes = append(probes,
			probe{"BPF programs on perf events (BPF_PROG_TYPE_PERF_EVENT)", features.HaveProgramType(ebpf.PerfEvent)},
			probe{"the bpf_get_stackid helper for perf event programs", features.HaveProgramHelper(ebpf.PerfEvent, asm.FnGetStackid)})
	}
	probes = append(probes, probe{"BPF ring buffers (Linux 5.8)", features.HaveMapType(ebpf.RingBuf)})
	for _, p := range probes {
		if errors.Is(p.err, ebpf.ErrNotSupported) {
			return "", &missing{"this kernel lacks " + p.what}
		}
	}

	// Each probe loads a program or creates a map: only those needed run.
	tpBTF := m != MethodRawTP && !errors.Is(features.HaveProgramType(ebpf.Tracing), ebpf.ErrNotSupported)
	storage := offCPU && tpBTF && !errors.Is(features.HaveMapType(ebpf.TaskStorage), ebpf.ErrNotSupported)
	rawTP := func() bool { return !errors.Is(features.HaveProgramType(ebpf.RawTracepoint), ebpf.ErrNotSupported) }
	switch m {
	case MethodAuto:
		switch {
		case tpBTF && storage && offCPU && bpf.HaveTaskWork():
			m = MethodTaskWork
		case tpBTF && (storage || !offCPU):
			m = MethodSysExit
			if offCPU {
				slog.Info("this kernel lacks bpf_task_work (Linux 6.18): off-CPU user stacks are taken at sys_exit, which runs on every system call")
			}
		case rawTP():
			m = MethodRawTP
			slog.Info("this kernel lacks BTF-enabled tracepoints (tp_btf) or task storage: using raw tracepoints, which cost a kernel stack walk at every context switch")
		default:
			return "", &missing{"this kernel lacks both BTF-enabled tracepoints (tp_btf, Linux 5.5) and raw tracepoint programs (Linux 4.17)"}
		}
	case MethodTaskWork:
		if !bpf.HaveTaskWork() {
			return "", &missing{"--offcpu-method task-work needs bpf_task_work (Linux 6.18), which this kernel lacks"}
		}
		fallthrough
	case MethodSysExit:
		if !tpBTF {
			return "", &missing{"this kernel lacks BTF-enabled tracepoints (tp_btf, Linux 5.5); use --offcpu-method raw-tp"}
		}
		if offCPU && !storage {
			return "", &missing{"this kernel lacks BPF task-local storage (Linux 5.11), which off-CPU profiling keeps its per-thread start times in; use --offcpu-method raw-tp"}
		}
	case MethodRawTP:
		if !rawTP() {
			return "", &missing{"this kernel lacks raw tracepoint programs (Linux 4.17)"}
		}
	}
	return m, nil
}
