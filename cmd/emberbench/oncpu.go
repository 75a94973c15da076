package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The on-CPU section: testdata/cpuwork, a fixed amount of work on as many
// threads as CPUs, run with no profiler, under `ember record`, `perf record
// -g` and a bpftrace profile:hz:99 one-liner, in rotating order each round.
// Every profiler launches the workload itself, held until it is attached, and
// profiles that process only; the workload times itself from its main().

const (
	cfgNone     = "none"
	cfgEmber    = "ember"
	cfgPerf     = "perf"
	cfgBpftrace = "bpftrace"
)

var onCPUConfigs = []string{cfgNone, cfgEmber, cfgPerf, cfgBpftrace}

// shortRun: each round also runs the profilers around 1/shortRun of the work.
const shortRun = 10

// onCPUOneLiner is the stack-counting one-liner bpftrace users would run.
const onCPUOneLiner = `profile:hz:99 /pid == cpid/ { @[ustack, kstack] = count(); }`

// cpuResult is one run of one configuration.
type cpuResult struct {
	work    workload
	wall    time.Duration // of the profiler process, launch to exit
	cpu     time.Duration // of the profiler process, without the workload's
	bpf     time.Duration // BPF program run time
	samples int64
	first   time.Duration // start to first sample; < 0 if unknown

	// perf's pipeline after perf record: perf script and folding.
	postCPU, postWall time.Duration
}

// series collects one number per round for each configuration, NaN where a
// run failed, so that rounds stay paired for ratios.
type series map[string][]float64

func (s series) add(cfg string, round int, v float64) {
	for len(s[cfg]) <= round {
		s[cfg] = append(s[cfg], math.NaN())
	}
	s[cfg][round] = v
}

func (b *bench) onCPU() error {
	chunks, err := b.calibrate()
	if err != nil {
		return err
	}
	b.logf("on-CPU: %d chunks of cpuwork on %d threads (about %.0fs each), %d rounds", chunks, b.threads, b.seconds, b.rounds)
	var m onCPUMeasures
	m.init()
	elapsed, samples, per1k, bpfPer1k := m.elapsed, m.samples, m.per1k, m.bpfPer1k
	fixed, marginal, e2eCPU, e2eWall, latency, first := m.fixed, m.marginal, m.e2eCPU, m.e2eWall, m.latency, m.first
	for r := 0; r < b.rounds; r++ {
		full := map[string]*cpuResult{}
		for k := range onCPUConfigs {
			c := onCPUConfigs[(r+k)%len(onCPUConfigs)]
			res, err := b.onCPURetry(r, c, chunks)
			if err != nil {
				b.warnf("on-CPU round %d, %s: %v", r+1, c, err)
				continue
			}
			if c == cfgNone {
				b.logf("  round %d %-8s work %.3fs", r+1, c, res.work.Elapsed.Seconds())
			} else {
				b.logf("  round %d %-8s work %.3fs, profiler cpu %v + bpf %v + after %v, %d samples, first sample %v",
					r+1, c, res.work.Elapsed.Seconds(), res.cpu.Round(time.Millisecond), res.bpf.Round(time.Microsecond),
					res.postCPU.Round(time.Millisecond), res.samples, res.first.Round(100*time.Microsecond))
			}
			full[c] = res
			elapsed.add(c, r, res.work.Elapsed.Seconds())
			if c == cfgNone {
				continue
			}
			samples.add(c, r, float64(res.samples))
			per1k.add(c, r, res.per1k(res.cpu+res.bpf))
			if c != cfgPerf {
				bpfPer1k.add(c, r, res.per1k(res.bpf))
			}
			if res.first >= 0 {
				first.add(c, r, res.first.Seconds()*1e3)
			}
			switch c {
			case cfgEmber:
				e2eCPU.add(c, r, (res.cpu + res.bpf).Seconds())
				e2eWall.add(c, r, res.wall.Seconds())
				latency.add(c, r, (res.wall - res.work.Elapsed).Seconds())
			case cfgPerf:
				per1k.add(pipe, r, res.per1k(res.total()))
				e2eCPU.add(pipe, r, res.total().Seconds())
				e2eWall.add(pipe, r, (res.wall + res.postWall).Seconds())
				latency.add(pipe, r, (res.wall + res.postWall - res.work.Elapsed).Seconds())
			}
		}
		// The same profilers around a tenth of the work: what is left of
		// their cost when the samples are fewer is start-up, exit and
		// per-binary work (symbolization); the difference is per sample.
		for k := range 3 {
			c := onCPUConfigs[1+(r+k)%3]
			res, err := b.onCPURetry(r, c, max(chunks/shortRun, 1))
			if err != nil {
				b.warnf("on-CPU round %d, short %s: %v", r+1, c, err)
				continue
			}
			b.logf("  round %d %-8s short run: profiler cpu %v + bpf %v + after %v, %d samples", r+1, c,
				res.cpu.Round(time.Millisecond), res.bpf.Round(time.Microsecond), res.postCPU.Round(time.Millisecond), res.samples)
			cfull := full[c]
			if c == cfgPerf {
				c = pipe
			}
			fixed.add(c, r, res.total().Seconds())
			if cfull != nil && cfull.samples > res.samples {
				d := (cfull.total() - res.total()).Seconds() * 1e3
				marginal.add(c, r, d/(float64(cfull.samples-res.samples)/1000))
			}
		}
	}
	b.onCPURows(&m)
	return nil
}

// pipe names perf's whole pipeline: perf record, perf script, folding.
const pipe = "perf pipeline"

// onCPUMeasures holds the on-CPU section's series.
type onCPUMeasures struct {
	elapsed  series // workload run time, s
	samples  series
	per1k    series // profiler CPU + BPF per 1,000 samples, ms
	bpfPer1k series // BPF run time per 1,000 samples, ms
	fixed    series // profiler CPU + BPF of a short run, s
	marginal series // per 1,000 samples more than the short run's, ms
	e2eCPU   series // CPU of a symbolized result, s
	e2eWall  series // wall time to a symbolized result, s
	latency  series // wall time after the workload ends, s
	first    series // time to first sample, ms
}

func (m *onCPUMeasures) init() {
	for _, s := range []*series{&m.elapsed, &m.samples, &m.per1k, &m.bpfPer1k, &m.fixed, &m.marginal,
		&m.e2eCPU, &m.e2eWall, &m.latency, &m.first} {
		*s = series{}
	}
}

func (b *bench) onCPURows(m *onCPUMeasures) {
	names := map[string]string{
		cfgNone:     "no profiler",
		cfgEmber:    "ember record -F 99",
		cfgPerf:     "perf record -g -F 99",
		cfgBpftrace: "bpftrace profile:hz:99",
		pipe:        "perf record + perf script + fold",
	}
	add := func(name, cfg, unit string, s series, base string, g *goal) {
		r := &row{Name: name, Config: names[cfg], Unit: unit, Values: present(s[cfg]), Goal: g}
		if base != "" && base != cfg {
			r.Ratios, r.Base = ratios(s[cfg], s[base]), names[base]
		}
		b.rows = append(b.rows, r)
	}
	half := func() *goal { return &goal{OnRatio: true, Max: true, Limit: 0.5, Text: "≤ 0.5× perf pipeline"} }
	elapsed, samples, per1k, bpfPer1k := m.elapsed, m.samples, m.per1k, m.bpfPer1k
	fixed, marginal, e2eCPU, e2eWall, latency, first := m.fixed, m.marginal, m.e2eCPU, m.e2eWall, m.latency, m.first
	const slow = "on-CPU: workload run time"
	add(slow, cfgNone, "s", elapsed, "", nil)
	add(slow, cfgEmber, "s", elapsed, cfgNone, &goal{OnRatio: true, Max: true, Limit: 1.01, Text: "≤ 1.01× (≤ 1% slower)"})
	add(slow, cfgPerf, "s", elapsed, cfgNone, nil)
	add(slow, cfgBpftrace, "s", elapsed, cfgNone, nil)
	for _, c := range []string{cfgEmber, cfgPerf, cfgBpftrace} {
		add("on-CPU: samples of the workload", c, "", samples, "", nil)
	}
	const cost = "on-CPU: profiler CPU (user+sys+BPF) per 1,000 samples, whole run"
	add(cost, cfgEmber, "ms", per1k, pipe, half())
	add(cost, cfgPerf, "ms", per1k, pipe, nil)
	add(cost, pipe, "ms", per1k, "", nil)
	add(cost, cfgBpftrace, "ms", per1k, pipe, nil)
	const fixedName = "on-CPU: profiler CPU of a run with 1/10 of the work"
	add(fixedName, cfgEmber, "s", fixed, pipe, nil)
	add(fixedName, pipe, "s", fixed, "", nil)
	add(fixedName, cfgBpftrace, "s", fixed, pipe, nil)
	const margName = "on-CPU: marginal profiler CPU per 1,000 samples (full − 1/10 run)"
	add(margName, cfgEmber, "ms", marginal, pipe, nil)
	add(margName, pipe, "ms", marginal, "", nil)
	add(margName, cfgBpftrace, "ms", marginal, pipe, nil)
	add("on-CPU: of which BPF run time, per 1,000 samples", cfgEmber, "ms", bpfPer1k, "", nil)
	add("on-CPU: of which BPF run time, per 1,000 samples", cfgBpftrace, "ms", bpfPer1k, cfgEmber, nil)
	for _, m := range []struct {
		name string
		s    series
	}{
		{"symbolized result: CPU, whole run", e2eCPU},
		{"symbolized result: wall, launch to file", e2eWall},
		{"symbolized result: wall after the workload ends", latency},
	} {
		add(m.name, cfgEmber, "s", m.s, pipe, nil)
		add(m.name, pipe, "s", m.s, "", nil)
	}
	add("time to first sample (command)", cfgEmber, "ms", first, cfgPerf,
		&goal{Max: true, Limit: 300, Text: "≤ 300 ms"})
	add("time to first sample (command)", cfgPerf, "ms", first, "", nil)
}

// total is the profiler's whole CPU: its process, its BPF programs, and for
// perf the steps after perf record.
func (r *cpuResult) total() time.Duration { return r.cpu + r.bpf + r.postCPU }

// per1k expresses d per 1,000 of the run's samples, in milliseconds.
func (r *cpuResult) per1k(d time.Duration) float64 {
	if r.samples == 0 {
		return math.NaN()
	}
	return d.Seconds() * 1e3 / (float64(r.samples) / 1000)
}

// calibrate picks the number of cpuwork chunks that takes about b.seconds
// with no profiler: it times a short run (the best of two).
func (b *bench) calibrate() (int, error) {
	const probe = 20000
	best := time.Duration(0)
	for range 2 {
		r, err := runCmd(b.ctx, []string{b.bins.cpuwork, strconv.Itoa(probe), strconv.Itoa(b.threads)}, runOpts{})
		if err != nil {
			return 0, fmt.Errorf("calibrate cpuwork: %w", err)
		}
		w, err := parseCPUWork(r.Stdout)
		if err != nil {
			return 0, err
		}
		if best == 0 || w.Elapsed < best {
			best = w.Elapsed
		}
	}
	n := int(float64(probe) * b.seconds / best.Seconds())
	return max(n, 1), nil
}

// attempts bounds the runs of one configuration in one round: a profiler run
// that took no samples of the workload did not profile it, and is run again
// rather than counted (it would look like a profiler that costs nothing).
const attempts = 3

var errNoSamples = errors.New("the profiler took no samples of the workload")

func (b *bench) onCPURetry(round int, cfg string, chunks int) (*cpuResult, error) {
	for i := 1; ; i++ {
		res, err := b.onCPURun(cfg, chunks, b.threads)
		if err == nil && cfg != cfgNone && res.samples == 0 {
			err = errNoSamples
		}
		if !errors.Is(err, errNoSamples) || i == attempts {
			return res, err
		}
		b.warnf("on-CPU round %d, %s (%d chunks), attempt %d: %v; running it again", round+1, cfg, chunks, i, err)
	}
}

func (b *bench) onCPURun(cfg string, chunks, threads int) (*cpuResult, error) {
	work := []string{b.bins.cpuwork, strconv.Itoa(chunks), strconv.Itoa(threads)}
	timeout := time.Duration(b.seconds*float64(time.Second))*10 + time.Minute
	res := &cpuResult{first: -1}
	var r *run
	var err error
	switch cfg {
	case cfgNone:
		r, err = runCmd(b.ctx, work, runOpts{Timeout: timeout})
	case cfgEmber:
		out := filepath.Join(b.dir, "oncpu.pb.gz")
		defer os.Remove(out)
		argv := append([]string{b.ember, "record", "-F", "99", "-o", out, "--"}, work...)
		r, err = runCmd(b.ctx, argv, runOpts{Timeout: timeout, WatchBPF: true, BPFStats: true})
	case cfgPerf:
		return b.perfRun(work, timeout)
	case cfgBpftrace:
		argv := []string{"bpftrace", "-e", onCPUOneLiner, "-c", strings.Join(work, " ")}
		r, err = runCmd(b.ctx, argv, runOpts{Timeout: timeout, WatchBPF: true, BPFStats: true})
	}
	if err != nil {
		return nil, err
	}
	if res.work, err = parseCPUWork(r.Stdout); err != nil {
		return nil, err
	}
	res.wall, res.bpf = r.Wall, r.BPF.RunTime
	if cfg != cfgNone {
		res.cpu = r.CPU - res.work.CPU
	}
	switch cfg {
	case cfgEmber:
		s, err := parseEmber(r.Stderr)
		if err != nil {
			return nil, err
		}
		res.samples = s.Samples
		if s.FirstSample > 0 {
			res.first = s.FirstSample
		}
	case cfgBpftrace:
		res.samples = parseBpftraceCounts(r.Stdout)
	}
	return res, nil
}

// perfRun is perf's whole pipeline: perf record, then perf script into a
// file, then folding it in a process of its own.
func (b *bench) perfRun(work []string, timeout time.Duration) (*cpuResult, error) {
	data := filepath.Join(b.dir, "perf.data")
	script := filepath.Join(b.dir, "perf.script")
	folded := filepath.Join(b.dir, "perf.folded")
	defer os.Remove(data)
	defer os.Remove(data + ".old")
	defer os.Remove(script)
	defer os.Remove(folded)
	argv := append([]string{"perf", "record", "-e", "cpu-clock", "-g", "-F", "99", "-k", "CLOCK_MONOTONIC", "-o", data, "--"}, work...)
	r, err := runCmd(b.ctx, argv, runOpts{Timeout: timeout})
	if err != nil {
		return nil, err
	}
	res := &cpuResult{first: -1, wall: r.Wall}
	if res.work, err = parseCPUWork(r.Stdout); err != nil {
		return nil, err
	}
	res.cpu = r.CPU - res.work.CPU
	if res.samples, err = parsePerfRecord(r.Stderr); err != nil {
		return nil, err
	}
	s, post, err := b.perfScriptFold(data, script, folded, timeout)
	if err != nil {
		return nil, err
	}
	res.postCPU, res.postWall = post.CPU, post.Wall
	if t, err := firstPerfSample(s); err == nil {
		res.first = t - r.Start
	}
	return res, nil
}

// perfScriptFold is the rest of perf's pipeline after perf record: perf
// script into a file, then folding it in a process of its own. It returns
// perf script's output and the two steps' CPU and wall time together.
func (b *bench) perfScriptFold(data, script, folded string, timeout time.Duration) (string, run, error) {
	s, err := runCmd(b.ctx, []string{"perf", "script", "-i", data}, runOpts{Timeout: timeout})
	if err != nil {
		return "", run{}, err
	}
	if err := os.WriteFile(script, []byte(s.Stdout), 0o644); err != nil {
		return "", run{}, err
	}
	f, err := runCmd(b.ctx, []string{b.self, "fold", script, folded}, runOpts{Timeout: timeout})
	if err != nil {
		return "", run{}, err
	}
	return s.Stdout, run{CPU: s.CPU + f.CPU, Wall: s.Wall + f.Wall}, nil
}
