package main

import (
	"errors"
	"fmt"
	"os"
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

const cfgEveryswitch = "every-switch"

var offCPUConfigs = []string{cfgNone, cfgEmber, cfgEveryswitch}

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

func (b *bench) offCPU() error {
	every := true
	if unmount, err := mountTracefs(); err != nil {
		b.warnf("off-CPU: %v; the capture-every-switch row is left out", err)
		every = false
	} else {
		defer unmount()
	}
	secs := strconv.FormatFloat(b.seconds, 'f', -1, 64)
	b.logf("off-CPU: pingpong %ss, %d rounds", secs, b.rounds)
	rate, cost := series{}, series{}
	for r := 0; r < b.rounds; r++ {
		for k := range offCPUConfigs {
			c := offCPUConfigs[(r+k)%len(offCPUConfigs)]
			if c == cfgEveryswitch && !every {
				continue
			}
			w, prof, bpf, err := b.offCPURun(c, secs)
			if err != nil {
				b.warnf("off-CPU round %d, %s: %v", r+1, c, err)
				continue
			}
			if c == cfgNone {
				b.logf("  round %d %-12s %.0f round trips/s", r+1, c, w.Rate)
			} else {
				b.logf("  round %d %-12s %.0f round trips/s, profiler cpu %v + bpf %v", r+1, c, w.Rate,
					prof.Round(time.Millisecond), bpf.Round(time.Millisecond))
			}
			rate.add(c, r, w.Rate)
			if c != cfgNone {
				cost.add(c, r, (prof + bpf).Seconds())
			}
		}
	}
	names := map[string]string{
		cfgNone:        "no profiler",
		cfgEmber:       "ember record --mode offcpu (defaults)",
		cfgEveryswitch: "bpftrace: stacks at every switch (offcputime-style)",
	}
	const name = "off-CPU ping-pong: round trips per second"
	b.rows = append(b.rows,
		&row{Name: name, Config: names[cfgNone], Unit: "/s", Values: present(rate[cfgNone])},
		&row{Name: name, Config: names[cfgEmber], Unit: "/s", Values: present(rate[cfgEmber]),
			Ratios: ratios(rate[cfgEmber], rate[cfgNone]), Base: names[cfgNone],
			Goal: &goal{OnRatio: true, Limit: 0.95, Text: "≥ 0.95× (≤ 5% fewer)"}},
	)
	if every {
		b.rows = append(b.rows, &row{Name: name, Config: names[cfgEveryswitch], Unit: "/s",
			Values: present(rate[cfgEveryswitch]), Ratios: ratios(rate[cfgEveryswitch], rate[cfgNone]), Base: names[cfgNone]})
	}
	const costName = "off-CPU ping-pong: profiler CPU (user+sys+BPF)"
	cr := &row{Name: costName, Config: names[cfgEmber], Unit: "s", Values: present(cost[cfgEmber])}
	if every {
		cr.Ratios, cr.Base = ratios(cost[cfgEmber], cost[cfgEveryswitch]), names[cfgEveryswitch]
	}
	b.rows = append(b.rows, cr)
	if every {
		b.rows = append(b.rows, &row{Name: costName, Config: names[cfgEveryswitch], Unit: "s", Values: present(cost[cfgEveryswitch])})
	}
	return nil
}

// offCPURun runs pingpong under cfg and returns what it reported, the
// profiler's own CPU time (its rusage without the workload's) and its BPF
// programs' run time.
func (b *bench) offCPURun(cfg, secs string) (w workload, prof, bpf time.Duration, err error) {
	work := []string{b.bins.pingpong, secs}
	opts := runOpts{Timeout: time.Duration(b.seconds*float64(time.Second))*10 + time.Minute, WatchBPF: cfg != cfgNone}
	var argv []string
	switch cfg {
	case cfgNone:
		argv = work
	case cfgEmber:
		out := filepath.Join(b.dir, "offcpu.pb.gz")
		defer os.Remove(out)
		argv = append([]string{b.ember, "record", "--mode", "offcpu", "-o", out, "--"}, work...)
	case cfgEveryswitch:
		argv = []string{"bpftrace", "-e", everySwitchProgram, "-c", strings.Join(work, " ")}
	default:
		return w, 0, 0, errors.New("unknown configuration " + cfg)
	}
	r, err := runCmd(b.ctx, argv, opts)
	if err != nil {
		return w, 0, 0, err
	}
	if w, err = parsePingPong(r.Stdout); err != nil {
		return w, 0, 0, err
	}
	if cfg != cfgNone {
		prof = r.CPU - w.CPU
	}
	return w, prof, r.BPF.RunTime, nil
}
