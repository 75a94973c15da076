package main

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// errNoMatch is returned when a tool's output lacks the line a parser needs.
var errNoMatch = errors.New("expected line not found")

// workload is what a workload reports about itself.
type workload struct {
	Elapsed time.Duration // from the start of its main to its end
	CPU     time.Duration // CPU time of the process in that span (all threads)
	Rate    float64       // pingpong: round trips per second
}

var cpuworkRE = regexp.MustCompile(`(?m)^cpuwork chunks=\d+ threads=\d+ elapsed_ns=(\d+) cpu_ns=(\d+)$`)

// parseCPUWork reads testdata/cpuwork's line
// "cpuwork chunks=N threads=T elapsed_ns=E cpu_ns=C".
func parseCPUWork(out string) (workload, error) {
	m := cpuworkRE.FindStringSubmatch(out)
	if m == nil {
		return workload{}, fmt.Errorf("cpuwork: %w in %q", errNoMatch, clip(out))
	}
	e, _ := strconv.ParseInt(m[1], 10, 64)
	c, _ := strconv.ParseInt(m[2], 10, 64)
	return workload{Elapsed: time.Duration(e), CPU: time.Duration(c)}, nil
}

var (
	rateRE   = regexp.MustCompile(`(?m)^rounds_per_sec (\d+)$`)
	threadRE = regexp.MustCompile(`(?m)^thread \S+ \d+ (\d+) (\d+) -?\d+$`)
)

// parsePingPong reads testdata/offcpu/pingpong's "rounds_per_sec N" and its
// per-thread lines "thread NAME TID WALL_NS CPU_NS OFFCPU_NS"; the CPU of the
// threads is the workload's own CPU time.
func parsePingPong(out string) (workload, error) {
	m := rateRE.FindStringSubmatch(out)
	if m == nil {
		return workload{}, fmt.Errorf("pingpong: rounds_per_sec %w in %q", errNoMatch, clip(out))
	}
	var w workload
	w.Rate, _ = strconv.ParseFloat(m[1], 64)
	threads := threadRE.FindAllStringSubmatch(out, -1)
	if len(threads) != 2 {
		return workload{}, fmt.Errorf("pingpong: %d thread lines, want 2: %w", len(threads), errNoMatch)
	}
	for _, t := range threads {
		wall, _ := strconv.ParseInt(t[1], 10, 64)
		cpu, _ := strconv.ParseInt(t[2], 10, 64)
		w.Elapsed = max(w.Elapsed, time.Duration(wall))
		w.CPU += time.Duration(cpu)
	}
	return w, nil
}

// emberSummary is what `ember record` prints at the end.
type emberSummary struct {
	Samples     int64
	Processes   int64
	Lost        int64
	Blocks      int64         // off-CPU blocks seen (before sampling)
	FirstSample time.Duration // from ember's main(); 0 if not printed
}

var (
	emberSamplesRE = regexp.MustCompile(`(?m)^ember: (\d+) samples from (\d+) processes`)
	emberLostRE    = regexp.MustCompile(`(?m)^ember: lost (\d+):`)
	emberBlocksRE  = regexp.MustCompile(`(?m)^ember: off-CPU: (\d+) blocks`)
	emberFirstRE   = regexp.MustCompile(`(?m)^ember: first sample ([0-9.]+)ms after start$`)
)

func parseEmber(stderr string) (emberSummary, error) {
	var s emberSummary
	m := emberSamplesRE.FindStringSubmatch(stderr)
	if m == nil {
		return s, fmt.Errorf("ember summary: %w in %q", errNoMatch, clip(stderr))
	}
	s.Samples, _ = strconv.ParseInt(m[1], 10, 64)
	s.Processes, _ = strconv.ParseInt(m[2], 10, 64)
	if m := emberLostRE.FindStringSubmatch(stderr); m != nil {
		s.Lost, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := emberBlocksRE.FindStringSubmatch(stderr); m != nil {
		s.Blocks, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := emberFirstRE.FindStringSubmatch(stderr); m != nil {
		ms, _ := strconv.ParseFloat(m[1], 64)
		s.FirstSample = time.Duration(ms * float64(time.Millisecond))
	}
	return s, nil
}

var (
	perfWroteRE   = regexp.MustCompile(`\[ perf record: Captured and wrote [0-9.]+ [kMG]?B [^\n]*\]`)
	perfSamplesRE = regexp.MustCompile(`\((\d+) samples\) \]$`)
)

// parsePerfRecord reads perf record's "[ perf record: Captured and wrote ...
// (N samples) ]"; perf leaves out the count when there were none.
func parsePerfRecord(stderr string) (int64, error) {
	w := perfWroteRE.FindString(stderr)
	if w == "" {
		return 0, fmt.Errorf("perf record: \"Captured and wrote\" %w in %q", errNoMatch, clip(stderr))
	}
	m := perfSamplesRE.FindStringSubmatch(w)
	if m == nil {
		return 0, nil
	}
	return strconv.ParseInt(m[1], 10, 64)
}

var bpftraceCountRE = regexp.MustCompile(`(?m)\]: (\d+)$`)

// parseBpftraceCounts sums the values of a printed bpftrace count() map,
// whose entries end in "]: N"; bpftrace prints nothing for an empty map.
func parseBpftraceCounts(stdout string) int64 {
	var n int64
	for _, m := range bpftraceCountRE.FindAllStringSubmatch(stdout, -1) {
		c, _ := strconv.ParseInt(m[1], 10, 64)
		n += c
	}
	return n
}

// perfHeaderRE matches a perf script sample header: comm, pid[/tid], an
// optional [cpu], then the timestamp followed by a colon.
var perfHeaderRE = regexp.MustCompile(`^(\S.*?)\s+(\d+)(?:/\d+)?\s+(?:\[\d+\]\s+)?(\d+\.\d+):`)

// firstPerfSample returns the earliest sample timestamp in perf script
// output, in perf's clock (CLOCK_MONOTONIC with perf record -k).
func firstPerfSample(script string) (time.Duration, error) {
	first := time.Duration(-1)
	for _, line := range strings.Split(script, "\n") {
		m := perfHeaderRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		sec, frac, _ := strings.Cut(m[3], ".")
		s, _ := strconv.ParseInt(sec, 10, 64)
		for len(frac) < 9 {
			frac += "0"
		}
		f, _ := strconv.ParseInt(frac[:9], 10, 64)
		t := time.Duration(s)*time.Second + time.Duration(f)
		if first < 0 || t < first {
			first = t
		}
	}
	if first < 0 {
		return 0, fmt.Errorf("perf script: sample header %w", errNoMatch)
	}
	return first, nil
}

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		return "..." + s[len(s)-300:]
	}
	return s
}
