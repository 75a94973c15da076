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
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// run is one finished process: its wall time, its rusage (which includes the
// children it reaped, such as a workload it launched), and its output.
type run struct {
	Start    time.Duration // CLOCK_MONOTONIC just before exec
	Wall     time.Duration
	CPU      time.Duration // user + system, the process and its reaped children
	MaxRSSKB int64
	Stdout   string
	Stderr   string
	BPF      bpfUsage // when watched
}

// bpfUsage is what the kernel accounts to the BPF programs and maps a process
// held open: run time and run count (kernel.bpf_stats_enabled must be on) and
// the memory charged to its maps.
type bpfUsage struct {
	Programs int
	RunTime  time.Duration
	Runs     uint64
	Maps     int
	MapBytes int64 // sum of memlock over the process's maps, at its peak
}

// runOpts says how to run a process.
type runOpts struct {
	WatchBPF bool          // find the process's BPF programs and maps while it runs
	BPFStats bool          // with the kernel's BPF run-time accounting on (it costs each run two clock reads)
	Timeout  time.Duration // 0: none
}

// monotonic returns CLOCK_MONOTONIC, the clock perf -k CLOCK_MONOTONIC and
// ember's first-sample time use.
func monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// runCmd runs argv to completion and measures it. A non-zero exit is an
// error that carries the tail of stderr.
func runCmd(ctx context.Context, argv []string, o runOpts) (*run, error) {
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if o.BPFStats {
		// The kernel turns the accounting off again when the last such
		// descriptor closes; the programs keep what they counted.
		st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
		if err != nil {
			return nil, fmt.Errorf("enable BPF run-time statistics: %w", err)
		}
		defer st.Close()
	}
	r := &run{Start: monotonic()}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	var watch *bpfWatch
	if o.WatchBPF {
		watch = watchBPF(cmd.Process.Pid)
	}
	err := cmd.Wait()
	r.Wall = time.Since(t0)
	if watch != nil {
		r.BPF = watch.finish()
	}
	r.Stdout, r.Stderr = stdout.String(), stderr.String()
	if cmd.ProcessState == nil {
		return r, fmt.Errorf("%s: %w", argv[0], err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		r.MaxRSSKB = ru.Maxrss
	}
	if err != nil {
		return r, fmt.Errorf("%s: %w%s", strings.Join(argv, " "), err, tail(r.Stderr))
	}
	return r, nil
}

// tail returns the last lines of s, for error messages.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return "\n\t" + strings.Join(lines, "\n\t")
}

// bpfWatch finds the BPF programs and maps a process holds by their file
// descriptors (/proc/PID/fd links "anon_inode:bpf-prog" and "bpf-map", whose
// fdinfo gives prog_id, map_id and memlock). It opens every program by ID, so
// that its run-time statistics can still be read after the process exits.
type bpfWatch struct {
	pid   int
	progs map[uint32]*ebpf.Program
	maps  map[uint32]int64 // map ID -> memlock bytes
	peak  int64
	stop  chan struct{}
	done  chan struct{}
}

func watchBPF(pid int) *bpfWatch {
	w := &bpfWatch{
		pid:   pid,
		progs: make(map[uint32]*ebpf.Program),
		maps:  make(map[uint32]int64),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go w.loop()
	return w
}

// loop polls every 20 ms until programs appear, then every 100 ms while
// the profiler may still be loading more, then once a second until the
// process exits: watching costs the measured run next to nothing.
func (w *bpfWatch) loop() {
	defer close(w.done)
	var found time.Time
	for {
		w.scan()
		every := 20 * time.Millisecond
		switch {
		case len(w.progs) == 0:
		case found.IsZero():
			found = time.Now()
			every = 100 * time.Millisecond
		case time.Since(found) < 3*time.Second:
			every = 100 * time.Millisecond
		default:
			every = time.Second
		}
		select {
		case <-w.stop:
			return
		case <-time.After(every):
		}
	}
}

func (w *bpfWatch) scan() {
	dir := fmt.Sprintf("/proc/%d/fd", w.pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		switch link {
		case "anon_inode:bpf-prog", "anon_inode:bpf_link":
			info := fdinfo(w.pid, e.Name())
			id, err := strconv.ParseUint(info["prog_id"], 10, 32)
			if err != nil || w.progs[uint32(id)] != nil {
				continue
			}
			if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
				w.progs[uint32(id)] = p
			}
		case "anon_inode:bpf-map":
			info := fdinfo(w.pid, e.Name())
			id, err := strconv.ParseUint(info["map_id"], 10, 32)
			if err != nil {
				continue
			}
			mem, _ := strconv.ParseInt(info["memlock"], 10, 64)
			w.maps[uint32(id)] = mem
		}
	}
	var sum int64
	for _, m := range w.maps {
		sum += m
	}
	w.peak = max(w.peak, sum)
}

// finish stops watching and returns the programs' totals; call it after the
// process has exited.
func (w *bpfWatch) finish() bpfUsage {
	close(w.stop)
	<-w.done
	u := bpfUsage{Programs: len(w.progs), Maps: len(w.maps), MapBytes: w.peak}
	for _, p := range w.progs {
		if st, err := p.Stats(); err == nil {
			u.RunTime += st.Runtime
			u.Runs += st.RunCount
		}
		p.Close()
	}
	return u
}

// fdinfo reads /proc/PID/fdinfo/FD as "key: value" pairs.
func fdinfo(pid int, fd string) map[string]string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd))
	if err != nil {
		return nil
	}
	out := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// vmRSS returns a live process's resident set size in KiB (VmRSS).
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in /proc/PID/status")
}
