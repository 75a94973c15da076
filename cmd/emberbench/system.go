package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// The whole-system section (#19): what a symbolized 10 s profile of the
// whole machine at 99 Hz costs with Ember and with perf's pipeline (perf
// record -a -g, perf script, folding), while two CPU hogs run (testdata/
// cpusplit and testdata/gosplit, one thread each, so that both CPUs are busy
// and there are a C and a Go process to walk and symbolize), in alternating
// order each round; Ember's time to its first sample and peak RSS in the
// same runs. A short whole-system run is dominated by start-up, which is
// what #19 measures.

// systemSeconds is the length of each whole-system recording.
const systemSeconds = 10

const (
	cfgSysEmber = "ember-system"
	cfgSysPerf  = "perf-system"
	cfgSysPipe  = "perf-system-pipeline"
)

// systemResult is one whole-system recording.
type systemResult struct {
	cpu     time.Duration // profiler user+sys (+ BPF for Ember); perf: record only
	postCPU time.Duration // perf script + fold
	samples int64
	first   time.Duration // < 0 if unknown
	rssMiB  float64
}

func (b *bench) system() error {
	b.logf("whole system: %d rounds of %ds recordings at 99 Hz beside two CPU hogs", b.rounds, systemSeconds)
	cpu, samples, first, rss := series{}, series{}, series{}, series{}
	order := []string{cfgSysEmber, cfgSysPerf}
	for r := 0; r < b.rounds; r++ {
		for k := range order {
			c := order[(r+k)%len(order)]
			res, err := b.systemRun(c)
			if err != nil {
				b.warnf("whole system round %d, %s: %v", r+1, c, err)
				continue
			}
			b.logf("  round %d %-12s cpu %v + after %v, %d samples, first sample %v, peak RSS %.1f MiB", r+1, c,
				res.cpu.Round(time.Millisecond), res.postCPU.Round(time.Millisecond), res.samples,
				res.first.Round(100*time.Microsecond), res.rssMiB)
			samples.add(c, r, float64(res.samples))
			if res.first >= 0 {
				first.add(c, r, res.first.Seconds()*1e3)
			}
			switch c {
			case cfgSysEmber:
				cpu.add(c, r, (res.cpu + res.postCPU).Seconds())
				rss.add(c, r, res.rssMiB)
			case cfgSysPerf:
				cpu.add(c, r, res.cpu.Seconds())
				cpu.add(cfgSysPipe, r, (res.cpu + res.postCPU).Seconds())
			}
		}
	}
	names := map[string]string{
		cfgSysEmber: fmt.Sprintf("ember record -F 99 -d %ds (whole system)", systemSeconds),
		cfgSysPerf:  fmt.Sprintf("perf record -a -g -F 99 -- sleep %d", systemSeconds),
		cfgSysPipe:  "perf record -a + perf script + fold",
	}
	add := func(name, cfg, unit string, s series, base string, g *goal) {
		r := &row{Name: name, Config: names[cfg], Unit: unit, Values: present(s[cfg]), Goal: g}
		if base != "" {
			r.Ratios, r.Base = ratios(s[cfg], s[base]), names[base]
		}
		b.rows = append(b.rows, r)
	}
	const cost = "whole system, symbolized 10 s at 99 Hz, two CPU hogs: profiler CPU (user+sys+BPF)"
	add(cost, cfgSysEmber, "s", cpu, cfgSysPipe, &goal{OnRatio: true, Max: true, Limit: 0.5, Text: "≤ 0.5× perf pipeline"})
	add(cost, cfgSysPerf, "s", cpu, cfgSysPipe, nil)
	add(cost, cfgSysPipe, "s", cpu, "", nil)
	const n = "whole system, 10 s at 99 Hz, two CPU hogs: samples"
	add(n, cfgSysEmber, "", samples, "", nil)
	add(n, cfgSysPerf, "", samples, "", nil)
	const ttfs = "time to first sample (whole system, two CPU hogs running)"
	add(ttfs, cfgSysEmber, "ms", first, cfgSysPerf, &goal{Max: true, Limit: 300, Text: "≤ 300 ms"})
	add(ttfs, cfgSysPerf, "ms", first, "", nil)
	add("memory: peak RSS (whole system 10 s, two CPU hogs)", cfgSysEmber, "MiB", rss, "",
		&goal{Max: true, Limit: 50, Text: "≤ 50 MiB"})
	return nil
}

// systemRun records the whole system for systemSeconds beside two CPU hogs,
// with Ember or with perf's pipeline.
func (b *bench) systemRun(cfg string) (*systemResult, error) {
	stop, err := b.startLoad(systemSeconds + 60)
	if err != nil {
		return nil, err
	}
	defer stop()
	timeout := systemSeconds*time.Second + 5*time.Minute
	res := &systemResult{first: -1}
	if cfg == cfgSysEmber {
		out := filepath.Join(b.dir, "system10.pb.gz")
		defer os.Remove(out)
		r, err := runCmd(b.ctx, []string{b.ember, "record", "-F", "99", "-d", strconv.Itoa(systemSeconds) + "s", "-o", out},
			runOpts{Timeout: timeout, WatchBPF: true, BPFStats: true})
		if err != nil {
			return nil, err
		}
		s, err := parseEmber(r.Stderr)
		if err != nil {
			return nil, err
		}
		res.cpu, res.samples, res.rssMiB = r.CPU+r.BPF.RunTime, s.Samples, float64(r.MaxRSSKB)/1024
		if s.FirstSample > 0 {
			res.first = s.FirstSample
		}
		return res, nil
	}
	data := filepath.Join(b.dir, "perf-system.data")
	script := filepath.Join(b.dir, "perf-system.script")
	folded := filepath.Join(b.dir, "perf-system.folded")
	for _, f := range []string{data, data + ".old", script, folded} {
		defer os.Remove(f)
	}
	r, err := runCmd(b.ctx, []string{"perf", "record", "-a", "-e", "cpu-clock", "-g", "-F", "99", "-k", "CLOCK_MONOTONIC",
		"-o", data, "--", "sleep", strconv.Itoa(systemSeconds)}, runOpts{Timeout: timeout})
	if err != nil {
		return nil, err
	}
	res.cpu = r.CPU
	if res.samples, err = parsePerfRecord(r.Stderr); err != nil {
		return nil, err
	}
	// perf script resolves inlined frames with addr2line, which on some
	// runs took over 5 minutes on this machine's large binaries; such a
	// round is dropped (and warned about) after 2 minutes.
	s, post, err := b.perfScriptFold(data, script, folded, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	res.postCPU = post.CPU
	if t, err := firstPerfSample(s); err == nil && t > r.Start {
		res.first = t - r.Start
	}
	return res, nil
}
