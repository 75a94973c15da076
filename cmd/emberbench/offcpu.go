package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The off-CPU section: testdata/offcpu/pingpong, two threads bouncing a byte
// over pipes (a context switch every few microseconds), run with no
// profiler, under `ember record --mode offcpu` at its defaults, and under the
// capture-every-switch approach of bcc's offcputime written as a bpftrace
// program: a kernel and user stack taken at every switch-out, the blocked
// time summed per stack at the switch-in.

const (
	cfgEveryswitch = "every-switch"
	// cfgEmberT1ms is Ember with T = 1ms: ten times the kept blocks of the
	// default, to show what each costs.
	cfgEmberT1ms = "ember-T1ms"
	// cfgEmberWakers is Ember with --wakers: a sched_waking program on every
	// wakeup, and the waker's stacks for every kept block.
	cfgEmberWakers = "ember-wakers"
)

const everySwitchProgram = `tracepoint:sched:sched_switch {
	if (pid == cpid) { @start[tid] = nsecs; @ks[tid] = kstack; @us[tid] = ustack; }
	$s = @start[args->next_pid];
	if ($s) {
		@off[@ks[args->next_pid], @us[args->next_pid]] = sum(nsecs - $s);
		delete(@start[args->next_pid]);
	}
}
END { clear(@start); clear(@ks); clear(@us); }`

const tracefs = "/sys/kernel/tracing"

// mountTracefs mounts tracefs if it is not there (bpftrace's
// tracepoint:sched:sched_switch reads its event format from it; Ember needs
// none). The returned function unmounts what was mounted here.
func mountTracefs() (func(), error) {
	if _, err := os.Stat(filepath.Join(tracefs, "events/sched/sched_switch")); err == nil {
		return func() {}, nil
	}
	if err := unix.Mount("nodev", tracefs, "tracefs", 0, ""); err != nil {
		return nil, fmt.Errorf("mount tracefs on %s: %w", tracefs, err)
	}
	return func() { _ = unix.Unmount(tracefs, 0) }, nil
}

// offCPUMethods are Ember's --offcpu-method values, in the order auto tries
// them: each the kernel loads gets its own rows.
var offCPUMethods = []string{"task-work", "sys-exit", "raw-tp"}

// cfgMethod is the configuration of Ember forced to one off-CPU method.
func cfgMethod(m string) string { return "ember-" + m }

// methodOf returns the off-CPU method of a cfgMethod configuration.
func methodOf(cfg string) (string, bool) {
	m, ok := strings.CutPrefix(cfg, "ember-")
	for _, x := range offCPUMethods {
		if ok && m == x {
			return m, true
		}
	}
	return "", false
}

// supportedMethods returns the off-CPU methods this kernel loads, by
// recording a short sleep with each (the kernel decides, as auto does).
func (b *bench) supportedMethods() []string {
	var ok []string
	for _, m := range offCPUMethods {
		out := filepath.Join(b.dir, "probe.pb.gz")
		cmd := exec.CommandContext(b.ctx, b.ember, "record", "--mode", "offcpu", "--offcpu-method", m, "-o", out, "--", "sleep", "0.2")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			b.logf("off-CPU: method %s left out: the kernel refuses it (%v)%s", m, err, tail(stderr.String()))
			continue
		}
		os.Remove(out)
		ok = append(ok, m)
	}
	return ok
}

// floorConfigs returns the floor configurations (hooks.go) of methods and
// of rseqHooks where this kernel attaches them, naming each in names.
func (b *bench) floorConfigs(methods []string, names map[string]string) []string {
	var cfgs []string
	add := func(hooks, of string) {
		cmd := exec.CommandContext(b.ctx, b.self, "hooks", "-probe", hooks)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.logf("off-CPU: no floor row for %s: %v%s", of, err, tail(string(out)))
			return
		}
		c := cfgFloor(hooks)
		names[c] = floorName(hooks, of)
		cfgs = append(cfgs, c)
	}
	for _, m := range methods {
		add(methodHooks[m], m+"'s hooks")
	}
	add(rseqHooks, "a return to user mode seen through rseq, not used by Ember")
	return cfgs
}

func (b *bench) offCPU() error {
	every := true
	if unmount, err := mountTracefs(); err != nil {
		b.warnf("off-CPU: %v; the capture-every-switch rows are left out", err)
		every = false
	} else {
		defer unmount()
	}
	methods := b.supportedMethods()
	if len(methods) == 0 {
		return errors.New("the kernel loads none of Ember's off-CPU methods")
	}
	names := map[string]string{
		cfgNone:        "no profiler",
		cfgEmberT1ms:   "ember record --mode offcpu --offcpu-threshold 1ms",
		cfgEmberWakers: "ember record --mode offcpu --wakers",
		cfgEveryswitch: "bpftrace: stacks at every switch (offcputime-style)",
	}
	var methodCfgs []string
	for i, m := range methods {
		c := cfgMethod(m)
		methodCfgs = append(methodCfgs, c)
		names[c] = "ember record --mode offcpu --offcpu-method " + m
		if i == 0 {
			names[c] += " (auto's choice here)"
		}
	}
	floors := b.floorConfigs(methods, names)
	pinned := append(append([]string{}, methodCfgs...), cfgEmberT1ms, cfgEmberWakers)
	if every {
		pinned = append(pinned, cfgEveryswitch)
	}
	pinned = append(pinned, floors...)
	for _, run := range []struct {
		pin     bool
		configs []string
		rounds  int
		name    string
	}{
		{true, pinned, b.offRounds, "off-CPU ping-pong pinned to one CPU: round trips per second (windows of one run)"},
		{false, append(append([]string{}, methodCfgs...), floors...), max(1, b.offRounds/2), "off-CPU ping-pong, unpinned: round trips per second (windows of one run)"},
	} {
		b.logf("off-CPU: one pingpong run (pinned: %v), %d rounds of %v windows with and without each profiler", run.pin, run.rounds, windowLen)
		rates, ratio, err := b.withinRun(run.configs, run.pin, run.rounds)
		if err != nil {
			return fmt.Errorf("off-CPU ping-pong (pinned: %v): %w", run.pin, err)
		}
		b.rows = append(b.rows, &row{Name: run.name, Config: names[cfgNone], Unit: "/s", Values: present(rates[cfgNone])})
		for _, c := range run.configs {
			r := &row{Name: run.name, Config: names[c], Unit: "/s", Values: present(rates[c]),
				Ratios: present(ratio[c]), Base: "no profiler, the windows before and after"}
			switch {
			case strings.HasPrefix(c, "ember-") && c != cfgEmberT1ms && c != cfgEmberWakers:
				r.Goal = &goal{OnRatio: true, Limit: 0.95, Text: "≥ 0.95× (≤ 5% fewer)"}
			case c == cfgEmberWakers:
				r.Goal = &goal{OnRatio: true, Limit: 0.9, Text: "≥ 0.9× (≤ 10% fewer)"}
			}
			b.rows = append(b.rows, r)
		}
	}
	return b.offCPUStats(methodCfgs, every, names)
}

// offCPUStats measures, in separate pinned runs with the kernel's BPF
// accounting on (it costs two clock reads per program run, so the rates come
// from withinRun, without it), each profiler's CPU and each of Ember's BPF
// programs' run time per run (ember record --bpf-stats).
func (b *bench) offCPUStats(methodCfgs []string, every bool, names map[string]string) error {
	configs := append([]string{}, methodCfgs...)
	if every {
		configs = append(configs, cfgEveryswitch)
	}
	secs := strconv.FormatFloat(b.seconds, 'f', -1, 64)
	b.logf("off-CPU: pingpong %ss with BPF accounting, %d rounds", secs, b.rounds)
	cost, perRun := series{}, series{}
	progCfgs := map[string][]string{} // configuration -> "cfg/program" keys, in order
	for r := 0; r < b.rounds; r++ {
		for k := range configs {
			c := configs[(r+k)%len(configs)]
			res, err := b.offCPURun(c, secs)
			for i := 1; errors.Is(err, errNoSamples) && i < attempts; i++ {
				b.warnf("off-CPU round %d, %s, attempt %d: %v; running it again", r+1, c, i, err)
				res, err = b.offCPURun(c, secs)
			}
			if err != nil {
				b.warnf("off-CPU round %d, %s: %v", r+1, c, err)
				continue
			}
			b.logf("  round %d %-16s with BPF stats: %.0f round trips/s, profiler cpu %v + bpf %v in %d runs", r+1, c,
				res.work.Rate, res.cpu.Round(time.Millisecond), res.bpf.Round(time.Millisecond), res.runs)
			cost.add(c, r, (res.cpu + res.bpf).Seconds())
			if c == cfgEveryswitch && res.runs > 0 {
				perRun.add(c, r, float64(res.bpf.Nanoseconds())/float64(res.runs))
			}
			for _, p := range res.progs {
				key := c + "/" + p.name
				if _, seen := perRun[key]; !seen {
					progCfgs[c] = append(progCfgs[c], key)
				}
				perRun.add(key, r, p.perRun)
			}
		}
	}
	for _, c := range configs {
		r := &row{Name: "off-CPU ping-pong: profiler CPU (user+sys+BPF), separate runs", Config: names[c], Unit: "s",
			Values: present(cost[c])}
		if c != cfgEveryswitch && every {
			r.Ratios, r.Base = ratios(cost[c], cost[cfgEveryswitch]), names[cfgEveryswitch]
		}
		b.rows = append(b.rows, r)
	}
	const name = "off-CPU ping-pong: BPF run time per program run (BPF_ENABLE_STATS), separate runs"
	for _, c := range configs {
		if c == cfgEveryswitch {
			b.rows = append(b.rows, &row{Name: name, Config: names[c] + ": all programs", Unit: "ns", Values: present(perRun[c])})
			continue
		}
		for _, key := range progCfgs[c] {
			prog := strings.TrimPrefix(key, c+"/")
			b.rows = append(b.rows, &row{Name: name, Config: names[c] + ": " + prog, Unit: "ns", Values: present(perRun[key])})
		}
	}
	return nil
}

// offResult is one ping-pong run.
type offResult struct {
	work workload
	cpu  time.Duration // the profiler's, without the workload's
	bpf  time.Duration // its BPF programs' run time (with stats)
	runs uint64        // and their run count
	// Ember's programs that ran, from record --bpf-stats.
	progs []progStat
}

// progStat is one BPF program's run time per run.
type progStat struct {
	name   string
	perRun float64 // ns
}

// emberBPFStatRE matches record --bpf-stats' line for one program:
// "ember: bpf NAME: N runs, DURATION run time, Xns per run".
var emberBPFStatRE = regexp.MustCompile(`(?m)^ember: bpf (\S+): (\d+) runs, (\S+) run time`)

// parseBPFStats reads record --bpf-stats' per-program lines.
func parseBPFStats(stderr string) []progStat {
	var out []progStat
	for _, m := range emberBPFStatRE.FindAllStringSubmatch(stderr, -1) {
		runs, err1 := strconv.ParseFloat(m[2], 64)
		d, err2 := time.ParseDuration(m[3])
		if err1 != nil || err2 != nil || runs == 0 {
			continue
		}
		out = append(out, progStat{m[1], float64(d.Nanoseconds()) / runs})
	}
	return out
}

// offCPURun runs pingpong under profiler cfg (a cfgMethod or cfgEveryswitch)
// with the kernel's BPF run-time accounting on.
func (b *bench) offCPURun(cfg, secs string) (*offResult, error) {
	// Both threads on one CPU: every round trip is two direct context
	// switches. Spread over the idle CPUs of a VM, the rate measures how
	// fast an idle vCPU wakes, not what a profiler costs per switch.
	// bpftrace -c wants the full path of the binary.
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return nil, fmt.Errorf("taskset: %w", err)
	}
	work := []string{taskset, "-c", "0", b.bins.pingpong, secs}
	opts := runOpts{Timeout: time.Duration(b.seconds*float64(time.Second))*10 + time.Minute,
		WatchBPF: true, BPFStats: true}
	var argv []string
	method, isEmber := methodOf(cfg)
	switch {
	case isEmber:
		out := filepath.Join(b.dir, "offcpu.pb.gz")
		defer os.Remove(out)
		argv = append([]string{b.ember, "record", "--mode", "offcpu", "--offcpu-method", method, "--bpf-stats", "-o", out, "--"}, work...)
	case cfg == cfgEveryswitch:
		argv = []string{"bpftrace", "-e", everySwitchProgram, "-c", strings.Join(work, " ")}
	default:
		return nil, errors.New("unknown configuration " + cfg)
	}
	r, err := runCmd(b.ctx, argv, opts)
	if err != nil {
		return nil, err
	}
	res := &offResult{bpf: r.BPF.RunTime, runs: r.BPF.Runs}
	if res.work, err = parsePingPong(r.Stdout); err != nil {
		return nil, err
	}
	res.cpu = r.CPU - res.work.CPU
	if isEmber {
		res.progs = parseBPFStats(r.Stderr)
		s, err := parseEmber(r.Stderr)
		if err != nil {
			return nil, err
		}
		if s.Blocks == 0 {
			return nil, fmt.Errorf("no off-CPU blocks: %w", errNoSamples)
		}
	}
	return res, nil
}
