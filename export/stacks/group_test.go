package stacks

import (
	"testing"

	"github.com/google/pprof/profile"
)

// GroupBy roots each stack at its label value, above the process; samples
// without the label keep their stacks as they were.
func TestGroupBy(t *testing.T) {
	f := &profile.Function{ID: 1, Name: "read"}
	l := &profile.Location{ID: 1, Line: []profile.Line{{Function: f}}}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "offcpu", Unit: "nanoseconds"}},
		Function:   []*profile.Function{f},
		Location:   []*profile.Location{l},
		Sample: []*profile.Sample{
			{Location: []*profile.Location{l}, Value: []int64{3}, Label: map[string][]string{"cause": {"pipe"}, "comm": {"app"}}},
			{Location: []*profile.Location{l}, Value: []int64{2}, Label: map[string][]string{"cause": {"net"}, "comm": {"app"}}},
			{Location: []*profile.Location{l}, Value: []int64{1}, Label: map[string][]string{"comm": {"app"}}},
		},
	}
	set, err := FromProfile(p, Options{ProcessRoot: true, GroupBy: "cause"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, s := range set.Stacks {
		key := ""
		for _, id := range s.Frames {
			key += set.Frames[id].Name + ";"
		}
		got[key] += s.Values[0]
	}
	want := map[string]int64{"cause: pipe;app;read;": 3, "cause: net;app;read;": 2, "app;read;": 1}
	if len(got) != len(want) {
		t.Fatalf("stacks %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("stack %q = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if set.Frames[set.Stacks[0].Frames[0]].Kind != Process {
		t.Errorf("group frame kind %v, want process", set.Frames[set.Stacks[0].Frames[0]].Kind)
	}
}
