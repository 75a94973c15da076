package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/internal/agent"
	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/tracer"
)

func init() {
	var (
		hz           int
		duration     time.Duration
		pids         []int
		cgroups      []string
		outputs      []string
		mode         string
		stackSize    uint32
		idle, self   bool
		offT, offMin time.Duration
		offState     string
		offMethod    string
		bpfStats     bool
		unwindMode   string
		btfFile      string
		dinfo        debuginfodFlags
		dinfoWait    time.Duration
		wakers       bool
		selfProfile  string
	)
	cmd := &cobra.Command{
		Use:   "record [flags] [-- COMMAND [ARGS...]]",
		Short: "Profile the whole system, some processes or a command, and write a profile",
		Long: `record samples stacks on every CPU (and, with --mode offcpu|wall, measures
blocked time) until Ctrl-C, --duration, or the exit of COMMAND, then writes a
symbolized profile. With no --pid, --cgroup or COMMAND it profiles the whole
system.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			// A recording is one run that ends: its collector's work,
			// not its heap, was the larger cost (a third of a 10 s
			// whole-system recording's CPU at 50%, the agent's setting),
			// and its peak RSS stayed 34 MiB at 200 (make bench).
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(200)
			}
			stopProfile, err := startSelfProfile(selfProfile)
			if err != nil {
				return err
			}
			defer stopProfile()
			m, err := pprof.ParseMode(mode)
			if err != nil {
				return err
			}
			kinds, err := agent.ParseOffCPUState(offState)
			if err != nil {
				return err
			}
			um, err := tracer.ParseUnwindMode(unwindMode)
			if err != nil {
				return err
			}
			om, err := tracer.ParseOffCPUMethod(offMethod)
			if err != nil {
				return err
			}
			cfg := agent.RecordConfig{
				Mode:     m,
				Duration: duration,
				Command:  args,
				Outputs:  outputs,
				BPFStats: bpfStats,
			}
			cfg.Tracer.Frequency = hz
			cfg.Tracer.PIDs = pids
			cfg.Tracer.StackEntries = stackSize
			cfg.Tracer.IncludeIdle = idle
			cfg.Tracer.IncludeSelf = self
			cfg.Tracer.OffCPUThreshold = offT
			cfg.Tracer.OffCPUMin = offMin
			cfg.Tracer.OffCPUKinds = kinds
			cfg.Tracer.Unwind = um
			cfg.Tracer.KernelBTF = btfFile
			cfg.Tracer.Wakers = wakers
			cfg.Tracer.OffCPUMethod = om
			if cfg.Tracer.Cgroups, err = cgroupDirs(cgroups); err != nil {
				return err
			}
			for _, d := range cfg.Tracer.Cgroups {
				fmt.Fprintf(os.Stderr, "ember: profiling cgroup %s and its descendants\n", d)
			}
			if cfg.Debuginfod, err = dinfo.client(slog.Default(), nil); err != nil {
				return err
			}
			if cfg.Debuginfod != nil {
				defer cfg.Debuginfod.Close()
			}
			cfg.DebuginfodWait = dinfoWait
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			sum, err := agent.Record(ctx, cfg)
			if err != nil {
				return err
			}
			agent.WriteSummary(os.Stderr, sum, slog.Default().Enabled(ctx, slog.LevelDebug))
			if sum.ExitCode != 0 {
				stopProfile()
				os.Exit(sum.ExitCode)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVarP(&hz, "frequency", "F", 99, "on-CPU samples per second per CPU")
	f.DurationVarP(&duration, "duration", "d", 0, "stop after this long (default: Ctrl-C, or when COMMAND exits)")
	f.IntSliceVarP(&pids, "pid", "p", nil, "profile this process and its threads (repeatable)")
	f.StringArrayVar(&cgroups, "cgroup", nil, cgroupUsage)
	f.StringArrayVarP(&outputs, "output", "o", []string{"ember.pb.gz"}, "output file; its extension picks the form (.pb.gz, .html, .svg, .folded, .otlp); repeat for several forms of one recording")
	f.StringVar(&mode, "mode", "cpu", "cpu, offcpu or wall")
	f.Uint32Var(&stackSize, "stack-map-size", 0, "entries per stack-trace map (default: sized from rate and CPUs)")
	f.BoolVar(&idle, "include-idle", false, "count the idle task")
	f.BoolVar(&self, "include-self", false, "do not exclude Ember's own samples")
	f.DurationVar(&offT, "offcpu-threshold", DefaultOffCPUThreshold, "off-CPU blocks shorter than this are sampled with probability d/T and weighted T")
	f.DurationVar(&offMin, "offcpu-min", 0, "off-CPU blocks shorter than this are never kept")
	f.StringVar(&offMethod, "offcpu-method", "auto", offCPUMethodUsage)
	f.StringVar(&offState, "offcpu-state", "all", "off-CPU states to keep: all, sleep (interruptible), disk (uninterruptible), runnable, or a comma list")
	f.BoolVar(&bpfStats, "bpf-stats", false, "account and report the BPF programs' run time (costs a clock read per run)")
	f.StringVar(&unwindMode, "unwind", "", "walk user stacks with unwind tables from .eh_frame (tables) or frame pointers only (fp) (default: tables where the kernel loads the table walker)")
	f.BoolVar(&wakers, "wakers", false, wakersUsage)
	f.StringVar(&btfFile, "btf", os.Getenv("EMBER_BTF"), btfUsage)
	f.StringVar(&selfProfile, "self-profile", "", "write Ember's own CPU profile (runtime/pprof) to this file, and its allocations to this file with .allocs appended, for measuring Ember itself")
	dinfo.add(f)
	f.DurationVar(&dinfoWait, "debuginfod-wait", agent.DefaultDebuginfodWait, "at the end, wait at most this long for debug files from debuginfod before symbolizing")
	rootCmd.AddCommand(cmd)
}

// cgroupUsage documents --cgroup for record and agent.
const cgroupUsage = "profile only this cgroup v2 and every cgroup below it (absolute, or relative to the cgroup2 mount; repeatable)"

// cgroupDirs resolves --cgroup paths to cgroup v2 directories.
func cgroupDirs(paths []string) ([]string, error) {
	if len(paths) > tracer.MaxCgroups {
		return nil, fmt.Errorf("--cgroup given %d times: at most %d", len(paths), tracer.MaxCgroups)
	}
	dirs := make([]string, 0, len(paths))
	for _, p := range paths {
		d, err := proc.CgroupDir(p)
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

// offCPUMethodUsage documents --offcpu-method for record and agent.
const offCPUMethodUsage = "how off-CPU blocks are hooked: task-work (tp_btf sched_switch, user stacks by bpf_task_work, Linux 6.18), sys-exit (tp_btf sched_switch and sys_exit, Linux 5.11), raw-tp (raw tracepoints, for kernels without tp_btf or task storage; a kernel stack walk per switch), or auto: the first the kernel loads"

// wakersUsage documents --wakers for record and agent.
const wakersUsage = "off-CPU and wall: put each blocked stack's waker (its stacks at the wakeup) beneath it, after a [woken by COMM] frame"

// btfUsage documents --btf for record and agent.
const btfUsage = "the kernel's BTF, for kernels without /sys/kernel/btf/vmlinux (a BTFHub-style file; default $EMBER_BTF)"

// DefaultOffCPUThreshold is T of duration-weighted off-CPU sampling: about
// one on-CPU sample period at 99 Hz, so that off-CPU time is sampled at the
// resolution on-CPU time is (a stack blocked 1 s in short blocks keeps about
// 100 of them, ±10%). T = 1ms gives ±3% there for ten times the kept blocks;
// each costs a kernel stack walk and, with task-work, an interrupt to queue
// the user stack's callback (about 12 µs on a nested VM).
const DefaultOffCPUThreshold = 10 * time.Millisecond
