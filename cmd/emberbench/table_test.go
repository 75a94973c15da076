package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7}, 7},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

func TestRatiosSkipFailedRounds(t *testing.T) {
	s := series{}
	s.add("a", 0, 2)
	s.add("a", 2, 6)
	s.add("b", 0, 1)
	s.add("b", 1, 1)
	s.add("b", 2, 3)
	got := ratios(s["a"], s["b"])
	if len(got) != 2 || got[0] != 2 || got[1] != 2 {
		t.Errorf("ratios = %v, want [2 2]", got)
	}
	if p := present(s["a"]); len(p) != 2 {
		t.Errorf("present = %v", p)
	}
}

func TestGoal(t *testing.T) {
	r := &row{Values: []float64{10, 12, 11}, Ratios: []float64{1.02, 1.0, 1.005}}
	if got := (&goal{OnRatio: true, Max: true, Limit: 1.01}).met(r); got != "yes" {
		t.Errorf("ratio 1.005 ≤ 1.01: %s", got)
	}
	if got := (&goal{Max: true, Limit: 10}).met(r); got == "yes" {
		t.Errorf("median 11 ≤ 10: %s", got)
	}
	if got := (&goal{Limit: 11}).met(r); got != "yes" {
		t.Errorf("median 11 ≥ 11: %s", got)
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	writeTable(&b, []*row{
		{Name: "on-CPU: workload run time", Config: "ember", Unit: "s", Values: []float64{5.01, 5.02, 5.0},
			Ratios: []float64{1.002, 1.004, 1.0}, Base: "no profiler", Goal: &goal{OnRatio: true, Max: true, Limit: 1.01, Text: "≤ 1.01×"}},
		{Name: "symbolizer", Config: "a|b", Text: "pending"},
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	if !strings.Contains(lines[2], "| 5.010 s | 5.000 s | 5.020 s | 3 | 1.002× (1.000–1.004) | no profiler | ≤ 1.01× | yes |") {
		t.Errorf("row: %s", lines[2])
	}
	if !strings.Contains(lines[3], `a\|b | pending |`) {
		t.Errorf("text row: %s", lines[3])
	}
}

func TestParseBenchMetrics(t *testing.T) {
	out := "=== RUN   BenchmarkVsLLVM\n" +
		"BenchmarkVsLLVM-2   \t       1\t2000 ns/op\t  850.0 ember-ns/addr\t 0.4200 time-ratio\t 0.5000 cpu-ratio\n" +
		"PASS\n"
	ms := parseBenchMetrics(out)
	if len(ms) != 2 || ms[0] != (metric{"time-ratio", 0.42}) || ms[1] != (metric{"cpu-ratio", 0.5}) {
		t.Errorf("got %v", ms)
	}
}
