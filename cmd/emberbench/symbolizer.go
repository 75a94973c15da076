package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The symbolizer section runs package symbolize's benchmarks against a
// baseline (named Benchmark...Vs..., e.g. BenchmarkVsLLVM against
// llvm-symbolizer-19) once each, and reports the metrics they print whose
// unit ends in "ratio". Their full log goes to the results file.

var benchVsRE = regexp.MustCompile(`^Benchmark\w*Vs\w*$`)

// benchLineRE matches a benchmark result line: name-P, iterations, then
// "value unit" pairs.
var benchLineRE = regexp.MustCompile(`(?m)^(Benchmark\w+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func (b *bench) symbolizer() error {
	list, err := runCmd(b.ctx, []string{b.goTool, "test", "-list", "^Benchmark", "./symbolize/"}, runOpts{Timeout: 10 * time.Minute})
	if err != nil {
		return fmt.Errorf("list symbolize benchmarks: %w", err)
	}
	var names []string
	for _, l := range strings.Split(list.Stdout, "\n") {
		if benchVsRE.MatchString(strings.TrimSpace(l)) {
			names = append(names, strings.TrimSpace(l))
		}
	}
	if len(names) == 0 {
		b.rows = append(b.rows, &row{Name: "symbolizer vs llvm-symbolizer-19", Config: "ember symbolize",
			Text: "pending (no Benchmark*Vs* in ./symbolize yet)"})
		return nil
	}
	for _, name := range names {
		b.logf("symbolizer: %s", name)
		r, err := runCmd(b.ctx, []string{b.goTool, "test", "-run", "^$", "-bench", "^" + name + "$",
			"-benchtime", "1x", "-v", "./symbolize/"}, runOpts{Timeout: 20 * time.Minute})
		if err != nil {
			b.warnf("symbolizer %s: %v", name, err)
			b.rows = append(b.rows, &row{Name: "symbolizer: " + name, Text: "failed: see log"})
			continue
		}
		b.appendix = append(b.appendix, fmt.Sprintf("### %s\n\n```\n%s```\n", name, r.Stdout))
		metrics := parseBenchMetrics(r.Stdout)
		if len(metrics) == 0 {
			b.rows = append(b.rows, &row{Name: "symbolizer: " + name, Text: "no ratio metrics printed"})
		}
		for _, m := range metrics {
			b.rows = append(b.rows, &row{Name: "symbolizer: " + name, Config: m.unit + " (ember / baseline)",
				Values: []float64{m.value}})
		}
	}
	return nil
}

type metric struct {
	unit  string
	value float64
}

// parseBenchMetrics returns the "…ratio" metrics of the benchmark result
// lines in out, in order.
func parseBenchMetrics(out string) []metric {
	var ms []metric
	for _, m := range benchLineRE.FindAllStringSubmatch(out, -1) {
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil || !strings.HasSuffix(f[i+1], "ratio") {
				continue
			}
			ms = append(ms, metric{unit: f[i+1], value: v})
		}
	}
	return ms
}
