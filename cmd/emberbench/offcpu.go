package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// offCPUStatsRuns are the separate runs, with the kernel's BPF accounting on
// (it costs two clock reads per program run, so the rates come from
// withinRun, without it), that measure the profilers' CPU and BPF run time.
var offCPUStatsRuns = []string{cfgEmber, cfgEveryswitch}

func (b *bench) offCPU() error {
	every := true
	if unmount, err := mountTracefs(); err != nil {
		b.warnf("off-CPU: %v; the capture-every-switch rows are left out", err)
		every = false
	} else {
		defer unmount()
	}
	configs := []string{cfgEmber, cfgEmberT1ms, cfgEmberWakers}
	if every {
		configs = append(configs, cfgEveryswitch)
	}

	b.logf("off-CPU: one pingpong run, %d rounds of %v windows with and without each profiler", b.offRounds, windowLen)
	rates, ratio, err := b.withinRun(configs)
	if err != nil {
		return fmt.Errorf("off-CPU ping-pong: %w", err)
	}

	secs := strconv.FormatFloat(b.seconds, 'f', -1, 64)
	b.logf("off-CPU: pingpong %ss with BPF accounting, %d rounds", secs, b.rounds)
	cost, switches := series{}, series{}
	for r := 0; r < b.rounds; r++ {
		for k := range offCPUStatsRuns {
			c := offCPUStatsRuns[(r+k)%len(offCPUStatsRuns)]
			if c == cfgEveryswitch && !every {
				continue
			}
			res, err := b.offCPURun(c, secs)
			for i := 1; errors.Is(err, errNoSamples) && i < attempts; i++ {
				b.warnf("off-CPU round %d, %s, attempt %d: %v; running it again", r+1, c, i, err)
				res, err = b.offCPURun(c, secs)
			}
			if err != nil {
				b.warnf("off-CPU round %d, %s: %v", r+1, c, err)
				continue
			}
			b.logf("  round %d %-12s with BPF stats: %.0f round trips/s, profiler cpu %v + bpf %v in %d runs", r+1, c,
				res.work.Rate, res.cpu.Round(time.Millisecond), res.bpf.Round(time.Millisecond), res.runs)
			cost.add(c, r, (res.cpu + res.bpf).Seconds())
			if res.runs > 0 {
				switches.add(c, r, float64(res.bpf.Nanoseconds())/float64(res.runs))
			}
		}
	}

	names := map[string]string{
		cfgNone:        "no profiler",
		cfgEmber:       "ember record --mode offcpu (defaults)",
		cfgEmberT1ms:   "ember record --mode offcpu --offcpu-threshold 1ms",
		cfgEmberWakers: "ember record --mode offcpu --wakers",
		cfgEveryswitch: "bpftrace: stacks at every switch (offcputime-style)",
	}
	const name = "off-CPU ping-pong: round trips per second (windows of one run)"
	b.rows = append(b.rows, &row{Name: name, Config: names[cfgNone], Unit: "/s", Values: present(rates[cfgNone])})
	for _, c := range configs {
		r := &row{Name: name, Config: names[c], Unit: "/s", Values: present(rates[c]),
			Ratios: present(ratio[c]), Base: "no profiler, the windows before and after"}
		switch c {
		case cfgEmber:
			r.Goal = &goal{OnRatio: true, Limit: 0.95, Text: "≥ 0.95× (≤ 5% fewer)"}
		case cfgEmberWakers:
			r.Goal = &goal{OnRatio: true, Limit: 0.9, Text: "≥ 0.9× (≤ 10% fewer)"}
		}
		b.rows = append(b.rows, r)
	}
	for _, m := range []struct {
		name, unit string
		s          series
	}{
		{"off-CPU ping-pong: profiler CPU (user+sys+BPF), separate runs", "s", cost},
		{"off-CPU ping-pong: BPF run time per program run, separate runs", "ns", switches},
	} {
		for _, c := range offCPUStatsRuns {
			if c == cfgEveryswitch && !every {
				continue
			}
			r := &row{Name: m.name, Config: names[c], Unit: m.unit, Values: present(m.s[c])}
			if c == cfgEmber && every {
				r.Ratios, r.Base = ratios(m.s[c], m.s[cfgEveryswitch]), names[cfgEveryswitch]
			}
			b.rows = append(b.rows, r)
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
}

// offCPURun runs pingpong under profiler cfg (cfgEmber or cfgEveryswitch)
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
	switch cfg {
	case cfgEmber:
		out := filepath.Join(b.dir, "offcpu.pb.gz")
		defer os.Remove(out)
		argv = append([]string{b.ember, "record", "--mode", "offcpu", "-o", out, "--"}, work...)
	case cfgEveryswitch:
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
	if cfg == cfgEmber {
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
