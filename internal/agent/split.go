package agent

import (
	"strconv"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/export/sink"
)

// split cuts one interval's profile into the profiles the sink receives:
// one per group (service, or process with SplitBy "pid") and per kind (CPU,
// off-CPU), each compacted to the mappings and locations it uses.
func (a *Agent) split(p *profile.Profile) []sink.Profile {
	type group struct {
		service string
		labels  map[string]string
		samples []*profile.Sample
	}
	groups := map[string]*group{}
	var order []string
	for _, s := range p.Sample {
		svc := first(s.Label["service_name"])
		k := svc
		if a.cfg.SplitBy == "pid" {
			k += "\x00" + strconv.FormatInt(firstNum(s.NumLabel["pid"]), 10)
		}
		g := groups[k]
		if g == nil {
			g = &group{service: svc, labels: map[string]string{}}
			if a.cfg.SplitBy == "pid" {
				g.labels["pid"] = strconv.FormatInt(firstNum(s.NumLabel["pid"]), 10)
				g.labels["comm"] = first(s.Label["comm"])
			}
			groups[k] = g
			order = append(order, k)
		}
		g.samples = append(g.samples, s)
	}
	var out []sink.Profile
	kinds := a.kinds(p)
	for _, k := range order {
		g := groups[k]
		for _, kind := range kinds {
			samples := g.samples
			if kind.values != nil {
				samples = selectValues(samples, kind.values)
			}
			if len(samples) == 0 {
				continue
			}
			// A shallow copy that shares p's locations: Compact copies
			// only what these samples use, so each profile costs its own
			// size, and one merge at a time is all the split holds beyond
			// its output (a deep copy of the group per kind, as before,
			// was an interval's worth of heap at the soak's peak).
			shallow := &profile.Profile{
				SampleType: p.SampleType, DefaultSampleType: p.DefaultSampleType,
				Sample: samples, Mapping: p.Mapping, Location: p.Location, Function: p.Function,
				Comments: p.Comments, TimeNanos: p.TimeNanos, DurationNanos: p.DurationNanos,
				PeriodType: p.PeriodType, Period: p.Period,
			}
			if kind.values != nil {
				kind.retype(shallow, p.SampleType)
			}
			out = append(out, sink.Profile{Service: g.service, Name: kind.name, Labels: g.labels, Profile: shallow.Compact()})
		}
	}
	return out
}

// kindOf is one profile kind cut from an interval: the sample values it
// keeps (nil: all) and the default type it names.
type kindOf struct {
	name   string
	values []int
	def    string
}

// kinds returns the CPU and/or off-CPU kinds in p: Pyroscope files each
// under its own name, so a wall profile is shipped as its two halves.
func (a *Agent) kinds(p *profile.Profile) []kindOf {
	if a.collectMode() != a.cfg.Mode || len(p.SampleType) != 4 {
		return []kindOf{{name: sink.NameCPU}}
	}
	var out []kindOf
	if a.cfg.Mode != pprof.ModeOffCPU { // ship the CPU half too
		out = append(out, kindOf{sink.NameCPU, []int{0, 1}, "cpu"})
	}
	return append(out, kindOf{sink.NameOffCPU, []int{2}, "offcpu"})
}

// retype gives q the sample types of k's values out of types.
func (k kindOf) retype(q *profile.Profile, types []*profile.ValueType) {
	ts := make([]*profile.ValueType, len(k.values))
	for i, j := range k.values {
		ts[i] = types[j]
	}
	q.SampleType = ts
	q.DefaultSampleType = k.def
	q.PeriodType = ts[len(ts)-1]
	if k.def == "offcpu" {
		q.Period = 1
	}
}

// selectValues returns new samples with only the values at idx, sharing
// the locations and labels of ss, and without the samples whose selected
// values are all zero.
func selectValues(ss []*profile.Sample, idx []int) []*profile.Sample {
	var kept []*profile.Sample
	for _, s := range ss {
		v := make([]int64, len(idx))
		nonzero := false
		for i, j := range idx {
			v[i] = s.Value[j]
			nonzero = nonzero || v[i] != 0
		}
		if nonzero {
			c := *s
			c.Value = v
			kept = append(kept, &c)
		}
	}
	return kept
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func firstNum(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	return v[0]
}
