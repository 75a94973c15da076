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
	for _, k := range order {
		g := groups[k]
		// A shallow copy that shares p's locations: Compact copies only
		// what the group's samples use, so a group costs its own size,
		// not the whole interval's.
		shallow := &profile.Profile{
			SampleType: p.SampleType, DefaultSampleType: p.DefaultSampleType,
			Sample: g.samples, Mapping: p.Mapping, Location: p.Location, Function: p.Function,
			Comments: p.Comments, TimeNanos: p.TimeNanos, DurationNanos: p.DurationNanos,
			PeriodType: p.PeriodType, Period: p.Period,
		}
		q := shallow.Compact()
		for _, kind := range a.kinds(q) {
			if len(kind.p.Sample) == 0 {
				continue
			}
			out = append(out, sink.Profile{Service: g.service, Name: kind.name, Labels: g.labels, Profile: kind.p})
		}
	}
	return out
}

type kindProfile struct {
	name string
	p    *profile.Profile
}

// kinds returns the CPU and/or off-CPU profiles in q: Pyroscope files each
// under its own name, so a wall profile is shipped as its two halves.
func (a *Agent) kinds(q *profile.Profile) []kindProfile {
	if a.collectMode() != a.cfg.Mode || len(q.SampleType) != 4 {
		return []kindProfile{{sink.NameCPU, q}}
	}
	var out []kindProfile
	if a.cfg.Mode != pprof.ModeOffCPU { // ship the CPU half too
		out = append(out, kindProfile{sink.NameCPU, selectValues(q, []int{0, 1}, "cpu").Compact()})
	}
	out = append(out, kindProfile{sink.NameOffCPU, selectValues(q, []int{2}, "offcpu").Compact()})
	return out
}

// selectValues returns a copy of q with only the sample values at idx,
// dropping samples whose selected values are all zero.
func selectValues(q *profile.Profile, idx []int, def string) *profile.Profile {
	r := q.Copy()
	types := make([]*profile.ValueType, len(idx))
	for i, j := range idx {
		types[i] = r.SampleType[j]
	}
	r.SampleType = types
	r.DefaultSampleType = def
	r.PeriodType = types[len(types)-1]
	if def == "offcpu" {
		r.Period = 1
	}
	kept := r.Sample[:0]
	for _, s := range r.Sample {
		v := make([]int64, len(idx))
		nonzero := false
		for i, j := range idx {
			v[i] = s.Value[j]
			nonzero = nonzero || v[i] != 0
		}
		if nonzero {
			s.Value = v
			kept = append(kept, s)
		}
	}
	r.Sample = kept
	return r
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
