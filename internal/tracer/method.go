package tracer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/bpf"
)

// OffCPUMethod says how the kernel side hooks the scheduler and takes the
// user stacks of kept off-CPU blocks (bpf/offcpu.bpf.h).
type OffCPUMethod string

const (
	// MethodAuto picks the cheapest method the kernel loads.
	MethodAuto OffCPUMethod = ""
	// MethodTaskWork: tp_btf/sched_switch, and a bpf_task_work callback
	// (Linux 6.18) takes a kept block's user stack on the thread's way back
	// to user mode. Nothing runs on system calls.
	MethodTaskWork OffCPUMethod = "task-work"
	// MethodSysExit: tp_btf/sched_switch and tp_btf/sys_exit, which runs on
	// every system call of every thread (Linux 5.11).
	MethodSysExit OffCPUMethod = "sys-exit"
	// MethodRawTP: raw_tp programs for kernels without tp_btf or task
	// storage (Linux 5.10); per-thread records in a hash map and a kernel
	// stack walk at every switch-out.
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

// hooks returns the program variants that implement m, best first: task
// work has one per form of its kfunc (bpf.HookTaskWork, Linux 6.19 on,
// then bpf.HookTaskWorkImpl, Linux 6.18).
func (m OffCPUMethod) hooks() []bpf.Hook {
	switch m {
	case MethodTaskWork:
		return []bpf.Hook{bpf.HookTaskWork, bpf.HookTaskWorkImpl}
	case MethodRawTP:
		return []bpf.Hook{bpf.HookRaw}
	}
	return []bpf.Hook{bpf.HookSysExit}
}

// probeBasics checks the kernel features every choice needs, so that their
// absence is named in a sentence instead of a refusal of each candidate.
func probeBasics(onCPU bool) error {
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
			return &missing{"this kernel lacks " + p.what}
		}
	}
	return nil
}

// attempt is one candidate tried, and why the kernel refused it.
type attempt struct {
	method OffCPUMethod
	unwind UnwindMode
	err    error
}

// load loads the best candidate the kernel accepts: unwind tables before
// frame pointers, then task-work, sys-exit and raw-tp, each only where the
// user left the choice to Ember (auto). The kernel decides by loading or
// refusing each; a fallback is said once, with the reason the better
// candidate was refused, and the verifier's whole log goes to debug. Where
// there is a choice, the decision is cached per kernel build (decision.go)
// and a later run loads the decided candidate directly.
func load(cfg Config, bcfg bpf.Config) (*bpf.Objects, OffCPUMethod, UnwindMode, error) {
	methods := []OffCPUMethod{cfg.OffCPUMethod}
	if cfg.OffCPUMethod == MethodAuto {
		methods = []OffCPUMethod{MethodTaskWork, MethodSysExit, MethodRawTP}
		if !cfg.OffCPU {
			// Only the process tracepoints: tp_btf, else raw_tp.
			methods = []OffCPUMethod{MethodSysExit, MethodRawTP}
		}
	} else if !cfg.OffCPU && cfg.OffCPUMethod == MethodTaskWork {
		methods = []OffCPUMethod{MethodSysExit}
	}
	unwinds := []UnwindMode{cfg.Unwind}
	if cfg.Unwind == UnwindAuto {
		unwinds = []UnwindMode{UnwindTables, UnwindFP}
	}
	// Where there is a choice of hook, each is probed alone before the full
	// load: a refused candidate then costs the verification of its off-CPU
	// programs only.
	probe := cfg.OffCPU && len(methods)*len(methods[0].hooks()) > 1
	var cache *decisions
	if probe && len(bcfg.Refuse) == 0 {
		cache = openDecisions(cfg)
	}
	if objs, d := loadDecided(cache, bcfg); objs != nil {
		return objs, d.Method, d.Unwind, nil
	}
	var tried []attempt
	var refusals []error
	for _, u := range unwinds {
		for _, m := range methods {
			var err error
			for _, h := range m.hooks() {
				bcfg.Hook, bcfg.UnwindTables = h, u == UnwindTables
				if probe {
					if err = bpf.ProbeHook(bcfg); err != nil {
						logRefusal(m, h, u, err)
						refusals = append(refusals, err)
						continue
					}
				}
				var objs *bpf.Objects
				objs, err = bpf.Load(bcfg)
				if err == nil {
					said := fallbackLines(cfg, tried, m, u)
					for _, l := range said {
						slog.Info(l)
					}
					if cacheable(refusals) {
						cache.put(decision{Method: m, Hook: h, Unwind: u, Said: said})
					}
					return objs, m, u, nil
				}
				logRefusal(m, h, u, err)
				refusals = append(refusals, err)
			}
			tried = append(tried, attempt{m, u, explainRefusal(m, u, err)})
		}
	}
	return nil, "", "", refusedAll(cfg, tried)
}

// loadDecided loads the candidate cached for this kernel build, and says
// again why the better ones are not used, once, naming the cache. If the
// kernel refuses it, the cache is forgotten and nil returned: auto then
// decides the normal way.
func loadDecided(cache *decisions, bcfg bpf.Config) (*bpf.Objects, *decision) {
	d := cache.get()
	if d == nil {
		return nil, nil
	}
	bcfg.Hook, bcfg.UnwindTables = d.Hook, d.Unwind == UnwindTables
	objs, err := bpf.Load(bcfg)
	if err != nil {
		slog.Debug("the cached decision was refused; deciding again", "file", cache.path, "method", d.Method, "unwind", d.Unwind, "err", err)
		cache.forget()
		return nil, nil
	}
	note := " (decided on an earlier run on this kernel build, cached in " + cache.path + ")"
	for _, l := range d.Said {
		slog.Info(l + note)
	}
	if len(d.Said) == 0 {
		slog.Debug("loaded auto's cached decision"+note, "method", d.Method, "unwind", d.Unwind)
	}
	return objs, d
}

// fallbackLines say why the chosen candidate is not the best one.
func fallbackLines(cfg Config, tried []attempt, m OffCPUMethod, u UnwindMode) []string {
	var said []string
	if u == UnwindFP && cfg.Unwind == UnwindAuto {
		for _, a := range tried {
			if a.unwind == UnwindTables && a.method == m {
				said = append(said, "walking user stacks with frame pointers only: the kernel refused the table walker: "+a.err.Error())
			}
		}
	}
	if !cfg.OffCPU || cfg.OffCPUMethod != MethodAuto {
		if !cfg.OffCPU && m == MethodRawTP {
			said = append(said, "following processes with raw tracepoints: the kernel refused BTF-enabled ones (tp_btf)")
		}
		return said
	}
	for _, a := range tried {
		if a.unwind == u && a.method != m {
			return append(said, fmt.Sprintf("off-CPU method %s: %s was refused: %v", m, a.method, a.err))
		}
	}
	return said
}

// logRefusal puts the whole refusal at debug, and the verifier's log after
// it, line by line as the kernel wrote it.
func logRefusal(m OffCPUMethod, h bpf.Hook, u UnwindMode, err error) {
	if !slog.Default().Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	slog.Debug("candidate refused", "method", m, "hook", h, "unwind", u, "err", err)
	var le *bpf.LoadError
	if errors.As(err, &le) && le.Verifier() {
		fmt.Fprintf(os.Stderr, "verifier log of %s:\n\t%s\n", le.Program, strings.Join(le.Log, "\n\t"))
	}
}

// explainRefusal turns a refusal into one sentence that names what the
// kernel lacks, where a probe can tell, else what the kernel said.
func explainRefusal(m OffCPUMethod, u UnwindMode, err error) error {
	var le *bpf.LoadError
	if !errors.As(err, &le) {
		return err
	}
	if le.Map != "" && le.MapType == ebpf.TaskStorage.String() {
		return &refusal{fmt.Sprintf("this kernel lacks BPF task storage (Linux 5.11), which the %s method keeps per-thread records in", m), err}
	}
	if !le.Verifier() && errors.Is(err, ebpf.ErrNotSupported) && strings.Contains(le.Reason, "kfunc") {
		return &refusal{"this kernel lacks bpf_task_work (bpf_task_work_schedule_resume, Linux 6.19, or its 6.18 form): " + le.Reason, err}
	}
	if u == UnwindTables {
		for _, h := range []struct {
			fn   asm.BuiltinFunc
			what string
		}{
			{asm.FnLoop, "the bpf_loop helper (Linux 5.17)"},
			{asm.FnTaskPtRegs, "the bpf_task_pt_regs helper (Linux 5.15)"},
			{asm.FnGetCurrentTaskBtf, "the bpf_get_current_task_btf helper (Linux 5.11)"},
		} {
			if errors.Is(features.HaveProgramHelper(ebpf.PerfEvent, h.fn), ebpf.ErrNotSupported) {
				return &refusal{"unwinding with tables needs " + h.what + ", which this kernel lacks", err}
			}
		}
	}
	if !le.Verifier() && errors.Is(err, unix.EPERM) {
		return &refusal{"the kernel refused to load Ember's BPF programs (EPERM without a verifier log: kernel lockdown, or a security module): " + le.Reason, err}
	}
	return err
}

// refusal is an explained refusal; it wraps the kernel's.
type refusal struct {
	msg string
	err error
}

func (e *refusal) Error() string { return e.msg }
func (e *refusal) Unwrap() error { return e.err }

// refusedAll is the error when no candidate loads: one refusal where the
// user chose the method or the unwinder, else every candidate's, on one
// line.
func refusedAll(cfg Config, tried []attempt) error {
	// The last candidate is the one that asks least of the kernel.
	first, last := tried[0].err, tried[len(tried)-1].err
	switch {
	case cfg.OffCPU && cfg.OffCPUMethod != MethodAuto:
		return &loadFailed{fmt.Sprintf("--offcpu-method %s: %v (auto picks a method this kernel loads)", cfg.OffCPUMethod, last), last}
	case cfg.Unwind == UnwindTables:
		return &loadFailed{fmt.Sprintf("--unwind tables: %v (--unwind fp walks with frame pointers)", last), last}
	case len(tried) == 1:
		return &loadFailed{first.Error(), first}
	}
	parts := make([]string, len(tried))
	for i, a := range tried {
		what := "off-CPU method " + string(a.method)
		if !cfg.OffCPU {
			what = "tracepoints " + map[OffCPUMethod]string{MethodSysExit: "tp_btf", MethodRawTP: "raw_tp"}[a.method]
		}
		parts[i] = fmt.Sprintf("%s with unwinder %s: %v", what, a.unwind, a.err)
	}
	return &loadFailed{"this kernel loads none of Ember's program variants: " + strings.Join(parts, "; "), first}
}

// loadFailed matches ErrNotSupported, like every error about what the kernel
// lacks or refuses.
type loadFailed struct {
	msg string
	err error
}

func (e *loadFailed) Error() string { return e.msg }
func (e *loadFailed) Unwrap() []error {
	return []error{e.err, ErrNotSupported}
}
