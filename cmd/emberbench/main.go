package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// bench is one harness run: settings, built workloads, and what was measured.
type bench struct {
	ctx        context.Context
	dir        string // scratch: workloads and outputs
	root       string // the repository
	ember      string
	self       string // this program, for `emberbench fold` and `emberbench hooks`
	goTool     string
	rounds     int
	offRounds  int
	seconds    float64
	threads    int
	rssSeconds float64
	rssRuns    int

	bins struct{ cpuwork, pingpong, cpusplit, gosplit string }

	rows     []*row
	log      []string
	warnings []string
	appendix []string
}

func (b *bench) logf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().UTC().Format("15:04:05"), s)
	b.log = append(b.log, s)
}

func (b *bench) warnf(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	b.logf("WARNING: %s", s)
	b.warnings = append(b.warnings, s)
}

var sections = []struct {
	name string
	run  func(*bench) error
}{
	{"cpu", (*bench).onCPU},
	{"system", (*bench).system},
	{"offcpu", (*bench).offCPU},
	{"memory", (*bench).memory},
	{"symbolize", (*bench).symbolizer},
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "fold" {
		if err := foldMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "emberbench:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "hooks" {
		if err := hooksMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "emberbench hooks:", err)
			os.Exit(1)
		}
		return
	}
	if err := benchMain(); err != nil {
		fmt.Fprintln(os.Stderr, "emberbench:", err)
		os.Exit(1)
	}
}

func benchMain() error {
	b := &bench{}
	out := flag.String("out", "bench/results.md", "write the results (Markdown) here")
	flag.StringVar(&b.ember, "ember", "bin/ember", "the ember binary to measure")
	flag.IntVar(&b.rounds, "rounds", 5, "rounds of alternating runs (each row is a median over them)")
	flag.IntVar(&b.offRounds, "offcpu-rounds", 12, "rounds of ping-pong windows (its rate moves by ±10% within seconds on a VM)")
	flag.Float64Var(&b.seconds, "seconds", 5, "length of each on-CPU and ping-pong run, in seconds")
	flag.IntVar(&b.threads, "threads", runtime.NumCPU(), "threads of the on-CPU workload")
	flag.Float64Var(&b.rssSeconds, "rss-seconds", 30, "length of each whole-system recording, in seconds")
	flag.IntVar(&b.rssRuns, "rss-runs", 5, "whole-system recordings")
	note := flag.String("note", "", "a line about the machine or the run for the results' header (e.g. that the machine is shared)")
	only := flag.String("sections", "cpu,system,offcpu,memory,symbolize", "sections to run, comma-separated")
	flag.Parse()
	if b.rounds < 1 || b.offRounds < 1 || b.seconds <= 0 || b.threads < 1 || b.rssSeconds <= 0 || b.rssRuns < 0 {
		return errors.New("-rounds, -seconds, -threads and -rss-seconds must be positive")
	}
	if os.Geteuid() != 0 {
		return errors.New("make bench needs root: it loads BPF programs and runs perf and bpftrace system-wide")
	}
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	if err := b.setup(); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)

	var cancel context.CancelFunc
	b.ctx, cancel = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if v, err := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled"); err == nil && strings.TrimSpace(string(v)) != "0" {
		b.warnf("kernel.bpf_stats_enabled is on for the whole run: every BPF program pays for its accounting")
	}

	m := describeMachine(b)
	m.note = *note
	for _, s := range sections {
		if !want[s.name] {
			continue
		}
		if err := s.run(b); err != nil {
			b.warnf("section %s: %v", s.name, err)
		}
		if b.ctx.Err() != nil {
			return errors.New("interrupted")
		}
	}
	m.end = time.Now().UTC()
	m.loadEnd = loadavg()

	writeTable(os.Stdout, b.rows)
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	b.writeResults(f, m)
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "results written to %s\n", *out)
	return nil
}

// setup checks the tools, finds the binaries and builds the workloads.
func (b *bench) setup() error {
	var missing []string
	for _, t := range []string{"perf", "bpftrace", "clang-19"} {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	b.goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(b.goTool); err != nil {
		if b.goTool, err = exec.LookPath("go"); err != nil {
			missing = append(missing, "go")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: run `make deps` (it installs linux-perf, bpftrace and clang-19 with apt)",
			strings.Join(missing, ", "))
	}
	var err error
	if b.root, err = os.Getwd(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(b.root, "testdata", "cpuwork", "cpuwork.c")); err != nil {
		return fmt.Errorf("run from the repository's top directory: %w", err)
	}
	if b.ember, err = filepath.Abs(b.ember); err != nil {
		return err
	}
	if _, err := os.Stat(b.ember); err != nil {
		return fmt.Errorf("ember binary: %w (run `make build`)", err)
	}
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	if b.dir, err = os.MkdirTemp("", "emberbench-"); err != nil {
		return err
	}
	cflags := []string{"-O2", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-pthread"}
	for _, w := range []struct {
		out *string
		src string
	}{
		{&b.bins.cpuwork, "cpuwork/cpuwork.c"},
		{&b.bins.pingpong, "offcpu/pingpong.c"},
		{&b.bins.cpusplit, "cpusplit/cpusplit.c"},
	} {
		*w.out = filepath.Join(b.dir, strings.TrimSuffix(filepath.Base(w.src), ".c"))
		args := append(append([]string{}, cflags...), "-o", *w.out, filepath.Join(b.root, "testdata", w.src))
		if out, err := exec.Command("clang-19", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %w\n%s", w.src, err, out)
		}
	}
	b.bins.gosplit = filepath.Join(b.dir, "gosplit")
	gb := exec.Command(b.goTool, "build", "-o", b.bins.gosplit, ".")
	gb.Dir = filepath.Join(b.root, "testdata", "gosplit")
	gb.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GO111MODULE=on")
	if out, err := gb.CombinedOutput(); err != nil {
		return fmt.Errorf("build testdata/gosplit: %w\n%s", err, out)
	}
	return nil
}

// machine describes where and when the numbers were taken.
type machine struct {
	kernel, cpus, mem, tools, commit string
	start, end                       time.Time
	loadStart, loadEnd               string
	settings                         string
	note                             string
}

func describeMachine(b *bench) *machine {
	m := &machine{start: time.Now().UTC(), loadStart: loadavg()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:]) + " " +
			unix.ByteSliceToString(u.Machine[:])
	}
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	m.cpus = fmt.Sprintf("%d × %s", runtime.NumCPU(), model)
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		first, _, _ := strings.Cut(string(b), "\n")
		m.mem = strings.Join(strings.Fields(strings.TrimPrefix(first, "MemTotal:")), " ")
	}
	var tools []string
	for _, argv := range [][]string{{"perf", "--version"}, {"bpftrace", "--version"}, {b.goTool, "version"}} {
		if out, err := exec.Command(argv[0], argv[1:]...).Output(); err == nil {
			tools = append(tools, strings.TrimSpace(string(out)))
		}
	}
	m.tools = strings.Join(tools, "; ")
	if out, err := exec.Command("git", "-C", b.root, "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.commit = strings.TrimSpace(string(out))
		// Changes to tracked files other than the results make it dirty.
		st, err := exec.Command("git", "-C", b.root, "status", "--porcelain", "--untracked-files=no",
			"--", ".", ":(exclude)bench/results.md").Output()
		if err == nil && len(strings.TrimSpace(string(st))) > 0 {
			m.commit += "-dirty"
		}
	}
	m.settings = fmt.Sprintf("%d rounds (ping-pong: %d); on-CPU and ping-pong runs of about %gs; cpuwork on %d threads; whole system: %d rounds of %ds; %d whole-system recordings of %gs",
		b.rounds, b.offRounds, b.seconds, b.threads, b.rounds, systemSeconds, b.rssRuns, b.rssSeconds)
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func (b *bench) writeResults(w io.Writer, m *machine) {
	fmt.Fprintf(w, "# Ember benchmarks (`make bench`)\n\n")
	fmt.Fprintf(w, "- machine: %s; %s; %s memory\n", m.kernel, m.cpus, m.mem)
	fmt.Fprintf(w, "- run: %s to %s UTC; load average (1, 5, 15 min) %s at the start, %s at the end\n",
		m.start.Format("2006-01-02 15:04"), m.end.Format("15:04"), m.loadStart, m.loadEnd)
	fmt.Fprintf(w, "- ember %s; %s\n", m.commit, m.tools)
	fmt.Fprintf(w, "- settings: %s\n", m.settings)
	if m.note != "" {
		fmt.Fprintf(w, "- note: %s\n", m.note)
	}
	fmt.Fprintln(w)
	writeTable(w, b.rows)
	fmt.Fprint(w, method)
	if len(b.warnings) > 0 {
		fmt.Fprintf(w, "\n## Warnings\n\n")
		for _, s := range b.warnings {
			fmt.Fprintf(w, "- %s\n", strings.ReplaceAll(s, "\n", " "))
		}
	}
	fmt.Fprintf(w, "\n## Runs\n\n```\n%s\n```\n", strings.Join(b.log, "\n"))
	for _, a := range b.appendix {
		fmt.Fprintf(w, "\n%s", a)
	}
}

const method = `
## How it is measured

- Rounds alternate: round i runs the configurations in an order rotated by i, so drift in the machine's load
  falls on all of them alike. A ratio is taken within each round against the baseline of that round; the table
  shows the median ratio over rounds and its range. Goals are judged on the median.
- On-CPU: testdata/cpuwork does a fixed amount of work on one thread per CPU and times itself from its main().
  Each profiler launches it, held until the profiler is attached, and profiles that process only:
  ` + "`ember record -F 99 -o X.pb.gz -- cpuwork`" + `, ` + "`perf record -e cpu-clock -g -F 99 -- cpuwork`" + `,
  ` + "`bpftrace -e '" + onCPUOneLiner + "' -c cpuwork`" + `.
- A profiler's CPU is the user+system time of its process (from wait4's rusage, less the workload's own CPU
  time, which the workload reports) plus the run time of its BPF programs (kernel.bpf_stats_enabled, programs
  found through /proc/PID/fdinfo and read by ID after the process exits). Perf takes its samples in the kernel
  without BPF; that kernel time is not attributed to perf, so perf's figures are a lower bound.
- Samples: ember's summary, perf record's sample count, the sum of bpftrace's printed counts.
- A profiler run that took no samples of its workload (or, off-CPU, saw no blocks) did not profile it; it is
  run again (up to 3 times) rather than counted, and each such run is listed under Warnings.
- Each round also runs the three profilers around a tenth of the work. What such a short run costs is mostly
  start-up, exit and per-binary work (loading BPF programs, reading kallsyms, symbolizing); the marginal CPU per
  1,000 samples is (full run − short run) / (full samples − short samples), the cost that grows with samples.
- "perf pipeline" is perf record, then ` + "`perf script`" + ` into a file, then folding it into stacks
  (` + "`emberbench fold`" + `, stackcollapse-perf's job) in a process of its own: the cost of a symbolized result with
  perf. Ember's symbolized result is its pprof (functions, files, lines, inlined frames), written on exit.
- Time to first sample: ember's own report (CLOCK_MONOTONIC, from its main() to the first BPF sample); perf's is
  from just before exec to the first sample's timestamp (` + "`perf record -k CLOCK_MONOTONIC`" + `).
- Off-CPU: testdata/offcpu/pingpong, pinned to one CPU (taskset -c 0) so that every round trip is two direct
  context switches. Its rate moves by ±10% from one run to the next on a VM, more than what is measured, so the
  rate rows come from one long run that counts its round trips per 50 ms: each profiler attaches to it by PID
  for a 3 s window in turn (` + "`ember record --pid`" + `, measured from 0.5 s after its sched_switch link exists,
  until SIGINT), with a 3 s window of no profiler before and after, and each profiled window's rate is divided
  by the mean of those two. The CPU and BPF rows come from separate runs with the kernel's BPF run-time
  accounting on. The every-switch program takes a kernel and a user stack at every switch-out of the
  workload's threads and sums blocked time per stack at switch-in, as bcc's offcputime does; it needs
  tracefs, which the harness mounts if it is absent and unmounts afterwards.
- Floor rows: ` + "`emberbench hooks`" + ` holds programs that return at once on the hooks an off-CPU method runs on at
  every switch or system call, in windows of the same run. What they cost is the part of a method's cost that no
  work inside its programs can take back; a program on sys_exit, even an empty one, sends every system call of
  every thread through the kernel's slow path. The rseq_update row is a hook Ember does not use: where a thread
  registered for restartable sequences (glibc's threads) goes back to user mode after a switch.
- Memory: peak RSS is wait4's ru_maxrss of ` + "`ember record`" + ` of the whole system while testdata/cpusplit and
  testdata/gosplit run; BPF map memory is the sum of memlock over the maps in its /proc/PID/fdinfo. The agent's
  RSS (VmRSS) is read beside the same two workloads, so that it has processes to unwind and symbolize.
- Whole system (#19): each round records the whole machine for 10 s at 99 Hz, in alternating order, with
  ` + "`ember record -F 99 -d 10s`" + ` and with ` + "`perf record -a -e cpu-clock -g -F 99 -- sleep 10`" + ` then
  ` + "`perf script`" + ` and folding, while testdata/cpusplit and testdata/gosplit (one thread each) keep both CPUs
  busy. Ember's CPU is its user+system time plus its BPF programs' run time; the pipeline's is the three
  processes' user+system time (perf's in-kernel sampling not attributed, as above). A 10 s recording is
  dominated by fixed costs (loading and verifying the programs, kallsyms, symbolizing each binary once), so
  these rows are where start-up shows. Ember's time to first sample (its own report) and peak RSS come from
  the same runs, under that load. Ember keeps auto's decision and unwind tables between runs in its cache
  directory (README, Kernels); the harness leaves it as a machine that runs Ember would have it: for a new
  build of Ember the first recording fills it and the later ones read it. A recording of the whole machine
  also unwinds and symbolizes whatever else runs on it, so on a shared machine these rows move with the load.
- Nothing in ` + "`make test`" + ` depends on these timings.
`
