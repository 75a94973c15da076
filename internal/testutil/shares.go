package testutil

import (
	"fmt"
	"strings"

	"github.com/google/pprof/profile"
)

// SampleIndex returns the index of the sample type named typ, or -1.
func SampleIndex(p *profile.Profile, typ string) int {
	for i, st := range p.SampleType {
		if st.Type == typ {
			return i
		}
	}
	return -1
}

// Frames returns the function names of a sample, leaf first, inlined frames
// included. A location the symbolizer left without a name (no line: an
// address outside every known mapping, or in a file without symbols) is
// "<unknown 0xADDR>", as a flame graph shows it unnamed: dropping it would
// hide the very losses the tests of "every frame named" look for.
func Frames(s *profile.Sample) []string {
	var out []string
	for _, loc := range s.Location {
		named := false
		for _, ln := range loc.Line {
			if ln.Function != nil && ln.Function.Name != "" {
				out = append(out, ln.Function.Name)
				named = true
			}
		}
		if !named {
			out = append(out, fmt.Sprintf("<unknown %#x>", loc.Address))
		}
	}
	return out
}

// Inclusive returns, for each function name, the share of the total of
// sample value idx spent in samples that have the function anywhere on their
// stack, over the samples keep accepts, and that total. A name matches a
// frame equal to it or ending in "."+name (Go package paths).
func Inclusive(p *profile.Profile, idx int, keep func(*profile.Sample) bool, names ...string) (map[string]float64, int64) {
	var total int64
	in := make(map[string]int64, len(names))
	for _, s := range p.Sample {
		if keep != nil && !keep(s) {
			continue
		}
		v := s.Value[idx]
		total += v
		frames := Frames(s)
		for _, n := range names {
			for _, f := range frames {
				if f == n || strings.HasSuffix(f, "."+n) {
					in[n] += v
					break
				}
			}
		}
	}
	out := make(map[string]float64, len(names))
	for _, n := range names {
		if total > 0 {
			out[n] = float64(in[n]) / float64(total)
		}
	}
	return out, total
}

// PID returns a filter for samples of process pid.
func PID(pid int) func(*profile.Sample) bool {
	return func(s *profile.Sample) bool {
		v := s.NumLabel["pid"]
		return len(v) == 1 && v[0] == int64(pid)
	}
}
