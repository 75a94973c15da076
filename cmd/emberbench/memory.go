package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The memory section: `ember record` of the whole system for b.rssSeconds
// while a C and a Go workload run (so that there are processes to sample and
// symbolize), its peak RSS (rusage maxrss) and the kernel memory charged to
// its BPF maps (memlock in /proc/PID/fdinfo); and `ember agent` after
// warm-up, once it exists.

func (b *bench) memory() error {
	secs := strconv.FormatFloat(b.rssSeconds, 'f', -1, 64)
	b.logf("memory: %d whole-system recordings of %ss", b.rssRuns, secs)
	var rss, maps, first, per1k []float64
	for i := 0; i < b.rssRuns; i++ {
		r, s, err := b.systemRecord(secs)
		if err != nil {
			b.warnf("memory run %d: %v", i+1, err)
			continue
		}
		b.logf("  run %d: peak RSS %.1f MiB, BPF maps %.1f MiB in %d maps, %d samples from %d processes, first sample %v",
			i+1, float64(r.MaxRSSKB)/1024, float64(r.BPF.MapBytes)/(1<<20), r.BPF.Maps, s.Samples, s.Processes, s.FirstSample)
		rss = append(rss, float64(r.MaxRSSKB)/1024)
		maps = append(maps, float64(r.BPF.MapBytes)/(1<<20))
		if s.FirstSample > 0 {
			first = append(first, s.FirstSample.Seconds()*1e3)
		}
		if s.Samples > 0 {
			per1k = append(per1k, (r.CPU+r.BPF.RunTime).Seconds()*1e3/(float64(s.Samples)/1000))
		}
	}
	// A child's ru_maxrss starts from its parent's peak (Go starts children
	// with vfork, and exec keeps the larger of the two marks), so the rows
	// mean something only while the harness stays smaller than Ember.
	var self unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &self); err == nil {
		own := float64(self.Maxrss) / 1024
		b.logf("memory: the harness's own peak RSS is %.1f MiB", own)
		if len(rss) > 0 && own >= median(rss)-1 {
			b.warnf("memory: the harness's peak RSS (%.1f MiB) is as large as the measured one: the peak RSS row may be the harness's", own)
		}
	}
	cfg := fmt.Sprintf("ember record -F 99 -d %ss (whole system)", secs)
	b.rows = append(b.rows,
		&row{Name: "memory: peak RSS", Config: cfg, Unit: "MiB", Values: rss,
			Goal: &goal{Max: true, Limit: 50, Text: "< 50 MiB"}},
		&row{Name: "memory: BPF maps (kernel memlock)", Config: cfg, Unit: "MiB", Values: maps},
		&row{Name: "time to first sample (whole system)", Config: cfg, Unit: "ms", Values: first,
			Goal: &goal{Max: true, Limit: 300, Text: "≤ 300 ms"}},
		&row{Name: "whole system: CPU (user+sys+BPF) per 1,000 samples", Config: cfg, Unit: "ms", Values: per1k},
	)
	b.rows = append(b.rows, b.agentRow())
	return nil
}

// systemRecord runs one whole-system recording beside a C and a Go workload.
func (b *bench) systemRecord(secs string) (*run, emberSummary, error) {
	stop, err := b.startLoad(b.rssSeconds + 10)
	if err != nil {
		return nil, emberSummary{}, err
	}
	defer stop()
	out := filepath.Join(b.dir, "system.pb.gz")
	defer os.Remove(out)
	timeout := time.Duration(b.rssSeconds*float64(time.Second)) + 5*time.Minute
	r, err := runCmd(b.ctx, []string{b.ember, "record", "-F", "99", "-d", secs + "s", "-o", out},
		runOpts{Timeout: timeout, WatchBPF: true, BPFStats: true})
	if err != nil {
		return nil, emberSummary{}, err
	}
	s, err := parseEmber(r.Stderr)
	return r, s, err
}

// startLoad starts the C and the Go workload (testdata/cpusplit and
// testdata/gosplit, one thread each) for seconds, so that a profiler has
// processes to sample, unwind and symbolize; stop kills them.
func (b *bench) startLoad(seconds float64) (stop func(), err error) {
	var load []*exec.Cmd
	stop = func() {
		for _, c := range load {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	secs := strconv.FormatFloat(seconds, 'f', -1, 64)
	for _, argv := range [][]string{{b.bins.cpusplit, secs, "1"}, {b.bins.gosplit, secs, "1"}} {
		c := exec.CommandContext(b.ctx, argv[0], argv[1:]...)
		if err := c.Start(); err != nil {
			stop()
			return nil, fmt.Errorf("start %s: %w", argv[0], err)
		}
		load = append(load, c)
	}
	return stop, nil
}

// Agent mode, measured once `ember agent` exists: one run beside the same
// workloads as the whole-system recordings (an idle machine would leave it
// nothing to unwind or symbolize), its RSS read every second after a warm-up
// of two intervals.
const (
	agentInterval = 15 * time.Second
	agentWarmup   = 2*agentInterval + 5*time.Second
	agentMeasure  = 30 * time.Second
)

func (b *bench) agentRow() *row {
	r := &row{Name: "memory: RSS in agent mode after warm-up",
		Config: fmt.Sprintf("ember agent --interval %v beside the C and Go workloads (RSS each second, %v after %v warm-up)", agentInterval, agentMeasure, agentWarmup),
		Unit:   "MiB", Goal: &goal{Max: true, Limit: 50, Text: "< 50 MiB"}}
	if err := exec.CommandContext(b.ctx, b.ember, "agent", "--help").Run(); err != nil {
		r.Text, r.Goal = "n/a (no agent yet)", nil
		return r
	}
	dir, err := os.MkdirTemp(b.dir, "agent")
	if err != nil {
		r.Text = "error: " + err.Error()
		return r
	}
	defer os.RemoveAll(dir)
	stop, err := b.startLoad((agentWarmup + agentMeasure + time.Minute).Seconds())
	if err != nil {
		r.Text = "error: " + err.Error()
		return r
	}
	defer stop()
	b.logf("memory: ember agent for %v", agentWarmup+agentMeasure)
	c := exec.CommandContext(b.ctx, b.ember, "agent", "--interval", agentInterval.String(), "--output-dir", dir)
	if err := c.Start(); err != nil {
		r.Text = "error: " + err.Error()
		return r
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	deadline := time.Now().Add(agentWarmup + agentMeasure)
	warm := time.Now().Add(agentWarmup)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			r.Text = fmt.Sprintf("error: agent exited early: %v", err)
			return r
		case <-time.After(time.Second):
		}
		if time.Now().After(warm) {
			if kb, err := vmRSS(c.Process.Pid); err == nil {
				r.Values = append(r.Values, float64(kb)/1024)
			}
		}
	}
	_ = c.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = c.Process.Kill()
		<-exited
	}
	return r
}
