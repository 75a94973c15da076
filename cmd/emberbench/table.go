package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
)

// row is one line of the results table: a measurement of one configuration
// over several runs, and optionally its ratio to a baseline measured in the
// same rounds and a goal.
type row struct {
	Name   string    // what is measured, e.g. "on-CPU: workload run time"
	Config string    // e.g. "ember record -F 99"
	Unit   string    // "s", "ms", "MiB", "/s", "" (a count)
	Values []float64 // one per run
	Text   string    // instead of values: "pending", "n/a (...)"

	Ratios []float64 // per round: value / baseline's value in the same round
	Base   string    // what the ratio is against
	Goal   *goal
}

// goal is a pass mark, on the ratio or on the median value.
type goal struct {
	OnRatio bool    // compare the median ratio, else the median value
	Max     bool    // the value must be at most Limit, else at least
	Limit   float64 //
	Text    string  // as shown, e.g. "≤ 1.01× (≤ 1% slower)"
}

func (g *goal) met(r *row) string {
	v := median(r.Values)
	if g.OnRatio {
		v = median(r.Ratios)
	}
	if math.IsNaN(v) {
		return "?"
	}
	ok := v >= g.Limit
	if g.Max {
		ok = v <= g.Limit
	}
	if ok {
		return "yes"
	}
	return "**no**"
}

// median of xs (NaN if empty); xs is not modified.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func minMax(xs []float64) (lo, hi float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	lo, hi = xs[0], xs[0]
	for _, x := range xs[1:] {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// format renders v in unit with about four significant digits.
func format(v float64, unit string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	var s string
	switch a := math.Abs(v); {
	case a == 0:
		s = "0"
	case a >= 1000:
		s = fmt.Sprintf("%.0f", v)
	case a >= 100:
		s = fmt.Sprintf("%.1f", v)
	case a >= 10:
		s = fmt.Sprintf("%.2f", v)
	case a >= 1:
		s = fmt.Sprintf("%.3f", v)
	default:
		s = fmt.Sprintf("%.4f", v)
	}
	if unit == "" {
		return s
	}
	if unit == "/s" {
		return s + "/s"
	}
	return s + " " + unit
}

// ratioText renders a median ratio with its range over rounds.
func ratioText(rs []float64) string {
	if len(rs) == 0 {
		return ""
	}
	lo, hi := minMax(rs)
	return fmt.Sprintf("%.3f× (%.3f–%.3f)", median(rs), lo, hi)
}

// writeTable writes rows as a Markdown table.
func writeTable(w io.Writer, rows []*row) {
	fmt.Fprintln(w, "| measurement | configuration | median | min | max | runs | ratio (per round: median (min–max)) | vs | goal | met? |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |")
	for _, r := range rows {
		cells := []string{esc(r.Name), esc(r.Config)}
		if r.Text != "" && len(r.Values) == 0 {
			cells = append(cells, esc(r.Text), "", "", "", "", "", "", "")
		} else {
			lo, hi := minMax(r.Values)
			cells = append(cells, format(median(r.Values), r.Unit), format(lo, r.Unit), format(hi, r.Unit),
				fmt.Sprint(len(r.Values)), ratioText(r.Ratios), esc(r.Base))
			if r.Goal != nil {
				cells = append(cells, esc(r.Goal.Text), r.Goal.met(r))
			} else {
				cells = append(cells, "", "")
			}
			if r.Text != "" {
				cells[len(cells)-2] += " " + esc(r.Text)
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
}

func esc(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// ratios divides a by b element-wise where both have a value (rounds in
// which one configuration failed are left out, as NaN).
func ratios(a, b []float64) []float64 {
	var out []float64
	for i := range min(len(a), len(b)) {
		if !math.IsNaN(a[i]) && !math.IsNaN(b[i]) && b[i] != 0 {
			out = append(out, a[i]/b[i])
		}
	}
	return out
}

// present drops the NaNs that mark failed runs.
func present(xs []float64) []float64 {
	var out []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			out = append(out, x)
		}
	}
	return out
}
