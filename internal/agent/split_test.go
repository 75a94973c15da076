package agent

import (
	"maps"
	"slices"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/export/sink"
)

// TestSplitWall: a wall interval of two services is shipped as a CPU and an
// off-CPU profile per service, each with its own values only, without the
// samples that have none of them, with only the locations it uses, and
// with the interval's totals.
func TestSplitWall(t *testing.T) {
	fn := []*profile.Function{{ID: 1, Name: "spin"}, {ID: 2, Name: "block"}, {ID: 3, Name: "other"}}
	m := &profile.Mapping{ID: 1, File: "/bin/x"}
	var locs []*profile.Location
	for i, f := range fn {
		locs = append(locs, &profile.Location{ID: uint64(i + 1), Mapping: m, Address: uint64(0x1000 * (i + 1)), Line: []profile.Line{{Function: f}}})
	}
	svc := func(s string) map[string][]string { return map[string][]string{"service_name": {s}} }
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"},
			{Type: "offcpu", Unit: "nanoseconds"}, {Type: "wall", Unit: "nanoseconds"}},
		DefaultSampleType: "wall",
		PeriodType:        &profile.ValueType{Type: "wall", Unit: "nanoseconds"}, Period: 1,
		Mapping: []*profile.Mapping{m}, Location: locs, Function: fn,
		Sample: []*profile.Sample{
			{Location: []*profile.Location{locs[0]}, Value: []int64{3, 30, 0, 30}, Label: svc("a")},
			{Location: []*profile.Location{locs[1]}, Value: []int64{0, 0, 500, 500}, Label: svc("a")},
			{Location: []*profile.Location{locs[2]}, Value: []int64{1, 10, 0, 10}, Label: svc("b")},
		},
	}
	a := &Agent{cfg: Config{Mode: pprof.ModeWall}}
	got := map[string]sink.Profile{}
	for _, q := range a.split(p) {
		got[q.Service+"/"+q.Name] = q
		if err := q.Profile.CheckValid(); err != nil {
			t.Errorf("%s/%s: %v", q.Service, q.Name, err)
		}
	}
	want := map[string]struct {
		types []string
		vals  []int64
		fn    string
	}{
		"a/" + sink.NameCPU:    {[]string{"samples", "cpu"}, []int64{3, 30}, "spin"},
		"a/" + sink.NameOffCPU: {[]string{"offcpu"}, []int64{500}, "block"},
		"b/" + sink.NameCPU:    {[]string{"samples", "cpu"}, []int64{1, 10}, "other"},
	}
	if len(got) != len(want) {
		t.Errorf("%d profiles, want %d (b has no off-CPU samples): %v", len(got), len(want), slices.Collect(maps.Keys(got)))
	}
	for k, w := range want {
		q, ok := got[k]
		if !ok {
			t.Errorf("no %s profile", k)
			continue
		}
		var types []string
		for _, st := range q.Profile.SampleType {
			types = append(types, st.Type)
		}
		if len(q.Profile.Sample) != 1 || len(q.Profile.Location) != 1 || len(q.Profile.Function) != 1 {
			t.Errorf("%s: %d samples, %d locations, %d functions; want 1 each", k, len(q.Profile.Sample), len(q.Profile.Location), len(q.Profile.Function))
			continue
		}
		s := q.Profile.Sample[0]
		if !slices.Equal(types, w.types) || !slices.Equal(s.Value, w.vals) || s.Location[0].Line[0].Function.Name != w.fn {
			t.Errorf("%s: types %v values %v function %s; want %v %v %s", k, types, s.Value, s.Location[0].Line[0].Function.Name, w.types, w.vals, w.fn)
		}
	}
	// The interval itself is left as it was (its samples are shared).
	if v := p.Sample[0].Value; len(v) != 4 || v[1] != 30 {
		t.Errorf("the interval's sample changed: %v", v)
	}
}
