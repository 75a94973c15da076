package pprof

import (
	"reflect"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// The samples of one thread share their label maps (an interval of
// thousands of short processes held a map per sample); samples of another
// thread, or with another label, have their own; equal samples merge.
func TestBuilderSharesLabels(t *testing.T) {
	b := NewBuilder(ModeCPU, 49, time.Unix(0, 0))
	m := b.Mapping(MappingKey{PID: 1, Start: 0x1000, Limit: 0x2000}, func(m *profile.Mapping) { m.File = "/bin/app" })
	a, c := b.Location(m, 0x1010), b.Location(m, 0x1020)
	thread := Labels{PID: 1, TID: 1, Comm: "app", Service: "app"}
	b.Add([]*profile.Location{a}, Value{Samples: 1}, thread)
	b.Add([]*profile.Location{c, a}, Value{Samples: 1}, thread)
	b.Add([]*profile.Location{a}, Value{Samples: 2}, thread)
	other := thread
	other.TID = 2
	b.Add([]*profile.Location{a}, Value{Samples: 1}, other)
	off := thread
	off.State = "sleeping"
	b.Add([]*profile.Location{a}, Value{Samples: 1}, off)
	p := b.Profile(time.Unix(1, 0))
	if len(p.Sample) != 4 {
		t.Fatalf("%d samples, want 4 (the repeated stack merged)", len(p.Sample))
	}
	same := func(x, y *profile.Sample) bool {
		return reflect.ValueOf(x.Label).Pointer() == reflect.ValueOf(y.Label).Pointer() &&
			reflect.ValueOf(x.NumLabel).Pointer() == reflect.ValueOf(y.NumLabel).Pointer()
	}
	s := p.Sample
	if !same(s[0], s[1]) {
		t.Error("two stacks of one thread have label maps of their own")
	}
	if same(s[0], s[2]) || same(s[0], s[3]) {
		t.Error("another thread, or another state, shares the thread's label maps")
	}
	if s[0].Value[0] != 3 || s[2].NumLabel["tid"][0] != 2 || s[3].Label["state"][0] != "sleeping" {
		t.Errorf("samples %v %v %v", s[0].Value, s[2].NumLabel, s[3].Label)
	}
	if err := p.CheckValid(); err != nil {
		t.Error(err)
	}
}
