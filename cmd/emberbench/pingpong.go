package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The ping-pong's rate changes by ±10% from one run to the next on a VM (the
// host moves the vCPU between cores), more than the cost being measured. So
// the rate rows come from one long run of pingpong: each profiler is attached
// for a window of it in turn, with windows of no profiler before and after,
// and a profiled window is compared with the mean of its two neighbours.

const (
	windowLen   = 3 * time.Second        // one measured window
	settle      = 500 * time.Millisecond // after a profiler attaches or exits
	attachLimit = 60 * time.Second       // for a profiler to attach
	exitLimit   = 60 * time.Second       // for a profiler to exit after SIGINT
	resendEvery = 10 * time.Second       // SIGINT again while it has not
)

// timeline is pingpong's "timeline" line: round trips per bucket from start.
type timeline struct {
	start, bucket time.Duration // CLOCK_MONOTONIC
	counts        []int64
}

func parseTimeline(out string) (*timeline, error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "timeline" {
			continue
		}
		start, err1 := strconv.ParseInt(f[1], 10, 64)
		bucket, err2 := strconv.ParseInt(f[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil || bucket <= 0 {
			return nil, fmt.Errorf("pingpong timeline header %q: %w", clip(line), errNoMatch)
		}
		t := &timeline{start: time.Duration(start), bucket: time.Duration(bucket)}
		for _, c := range f[3:] {
			n, err := strconv.ParseInt(c, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("pingpong timeline: %w", err)
			}
			t.counts = append(t.counts, n)
		}
		return t, nil
	}
	return nil, fmt.Errorf("pingpong printed no timeline: %w", errNoMatch)
}

// rate returns the round trips per second over the whole buckets inside
// [a, b) (CLOCK_MONOTONIC), or an error if the run does not cover them.
func (t *timeline) rate(a, b time.Duration) (float64, error) {
	i := int((a - t.start + t.bucket - 1) / t.bucket)
	j := int((b - t.start) / t.bucket)
	if i < 0 || j > len(t.counts) || j-i < 2 {
		return 0, fmt.Errorf("window %v–%v is outside the run's %d buckets", a-t.start, b-t.start, len(t.counts))
	}
	var n int64
	for _, c := range t.counts[i:j] {
		n += c
	}
	return float64(n) / (time.Duration(j-i) * t.bucket).Seconds(), nil
}

// window is a stretch of the run with one configuration.
type window struct {
	cfg  string
	a, b time.Duration
}

// withinRun runs one pingpong for rounds × configs profiled windows, and
// returns the rate of every window (cfgNone's too) and, per configuration
// and round, the ratio of its rate to the mean of the neighbouring cfgNone
// windows. Pinned, both threads share CPU 0: every round trip is two direct
// context switches. Unpinned, as real programs run, the scheduler spreads
// them over the CPUs and the rate also measures how fast an idle CPU wakes.
func (b *bench) withinRun(configs []string, pin bool, rounds int) (rates, ratio series, err error) {
	var pinArgv []string
	if pin {
		taskset, err := exec.LookPath("taskset")
		if err != nil {
			return nil, nil, fmt.Errorf("taskset: %w", err)
		}
		pinArgv = []string{taskset, "-c", "0"}
	}
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	// Long enough for every window twice over; SIGINT ends it after the last.
	// (Not longer: its timeline is printed whole, and the harness's own
	// peak RSS is inherited by the processes it starts, whose ru_maxrss the
	// memory rows read.)
	per := 2*(windowLen+settle) + 10*time.Second // a window of none, one profiled, a profiler's start and exit
	limit := time.Duration(rounds*len(configs))*per + time.Minute
	argv := append(pinArgv, b.bins.pingpong, strconv.Itoa(int(limit.Seconds())), "timeline")
	work := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	work.Stdout = &out
	if err := work.Start(); err != nil {
		return nil, nil, fmt.Errorf("start pingpong: %w", err)
	}
	defer work.Process.Kill()
	pid := work.Process.Pid // taskset, if any, execs pingpong

	var wins []window
	idle := func() {
		time.Sleep(settle)
		a := monotonic()
		time.Sleep(windowLen)
		wins = append(wins, window{cfgNone, a, monotonic()})
	}
	for r := 0; r < rounds; r++ {
		for k := range configs {
			c := configs[(r+k)%len(configs)]
			idle()
			w, err := b.attachedWindow(ctx, c, pid)
			if err != nil {
				return nil, nil, fmt.Errorf("round %d, %s: %w", r+1, c, err)
			}
			wins = append(wins, w)
			b.logf("  round %d %-12s attached %v–%v", r+1, c, (w.a - wins[0].a).Round(time.Millisecond), (w.b - wins[0].a).Round(time.Millisecond))
		}
	}
	idle()
	if err := work.Process.Signal(os.Interrupt); err != nil {
		return nil, nil, fmt.Errorf("stop pingpong: %w", err)
	}
	if err := work.Wait(); err != nil {
		return nil, nil, fmt.Errorf("pingpong: %w", err)
	}
	tl, err := parseTimeline(out.String())
	if err != nil {
		return nil, nil, err
	}

	rates, ratio = series{}, series{}
	round := map[string]int{}
	for i, w := range wins {
		v, err := tl.rate(w.a, w.b)
		if err != nil {
			return nil, nil, err
		}
		rates.add(w.cfg, round[w.cfg], v)
		if w.cfg != cfgNone {
			before, err1 := tl.rate(wins[i-1].a, wins[i-1].b)
			after, err2 := tl.rate(wins[i+1].a, wins[i+1].b)
			if err := errors.Join(err1, err2); err != nil {
				return nil, nil, err
			}
			ratio.add(w.cfg, round[w.cfg], v/((before+after)/2))
		}
		round[w.cfg]++
	}
	return rates, ratio, nil
}

// attachedWindow starts profiler cfg on pid, waits until it is attached,
// measures one window and stops the profiler.
func (b *bench) attachedWindow(ctx context.Context, cfg string, pid int) (window, error) {
	var argv []string
	attachedLine := ""
	switch cfg {
	case cfgEmber, cfgEmberT1ms, cfgEmberWakers, cfgMethod("task-work"), cfgMethod("sys-exit"), cfgMethod("raw-tp"):
		out := filepath.Join(b.dir, "window.pb.gz")
		defer os.Remove(out)
		argv = []string{b.ember, "record", "--mode", "offcpu", "--pid", strconv.Itoa(pid), "-o", out}
		if m, ok := methodOf(cfg); ok {
			argv = append(argv, "--offcpu-method", m)
		}
		switch cfg {
		case cfgEmberT1ms:
			argv = append(argv, "--offcpu-threshold", "1ms")
		case cfgEmberWakers:
			argv = append(argv, "--wakers")
		}
	case cfgEveryswitch:
		prog := strings.ReplaceAll(everySwitchProgram, "cpid", strconv.Itoa(pid))
		argv = []string{"bpftrace", "-e", prog}
		attachedLine = "Attaching"
	default:
		hooks, ok := hooksOf(cfg)
		if !ok {
			return window{}, errors.New("unknown configuration " + cfg)
		}
		argv = []string{b.self, "hooks", hooks}
		attachedLine = "attached"
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return window{}, err
	}
	if err := cmd.Start(); err != nil {
		return window{}, fmt.Errorf("start %s: %w", argv[0], err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
	}()
	// Attached: bpftrace says so; Ember holds a sched_switch link once it
	// has attached, which /proc/PID/fdinfo shows.
	deadline := time.Now().Add(attachLimit)
	for attached := false; !attached; {
		if time.Now().After(deadline) {
			return window{}, fmt.Errorf("%s did not attach within %v%s", argv[0], attachLimit, tail(stderr.String()))
		}
		if attachedLine != "" {
			select {
			case l, ok := <-lines:
				if !ok {
					return window{}, fmt.Errorf("%s exited before attaching%s", argv[0], tail(stderr.String()))
				}
				attached = strings.Contains(l, attachedLine)
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		attached = hasTracingLink(cmd.Process.Pid)
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(settle)
	w := window{cfg: cfg, a: monotonic()}
	time.Sleep(windowLen)
	w.b = monotonic()
	go func() {
		for range lines {
		}
	}()
	killed, err := interrupt(cmd, resendEvery, exitLimit)
	if err != nil {
		return window{}, fmt.Errorf("%s: %w%s", strings.Join(argv, " "), err, tail(stderr.String()))
	}
	if killed {
		// The window was measured before the signal; only the
		// profiler's own output, which no row uses, is lost.
		b.warnf("off-CPU: %s did not exit within %v of SIGINT; killed", argv[0], exitLimit)
	}
	return w, nil
}

// interrupt ends a profiler at the end of its window with SIGINT and waits
// for it, at most limit, then kills it. bpftrace has been seen to miss a
// SIGINT and wait forever, the bench with it: the signal is sent again every
// resendEvery until the process exits.
func interrupt(cmd *exec.Cmd, resendEvery, limit time.Duration) (killed bool, err error) {
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	resend := time.NewTicker(resendEvery)
	defer resend.Stop()
	deadline := time.After(limit)
	for {
		if err := cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return false, err
		}
		select {
		case err := <-exited:
			return false, err
		case <-resend.C:
		case <-deadline:
			_ = cmd.Process.Kill()
			<-exited
			return true, nil
		}
	}
}

// hasTracingLink reports whether process pid holds a BPF link of a
// tracepoint program (tp_btf or raw_tp).
func hasTracingLink(pid int) bool {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return false
	}
	for _, fd := range fds {
		info := fdinfo(pid, fd.Name())
		if t := info["link_type"]; t == "tracing" || t == "raw_tracepoint" {
			return true
		}
	}
	return false
}
