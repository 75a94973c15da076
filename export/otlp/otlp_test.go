package otlp

import (
	"testing"

	"github.com/google/pprof/profile"
	"google.golang.org/protobuf/proto"
)

// synthetic returns a wall-mode-like profile: two sample types, labels of
// both kinds, a kernel frame, an inlined frame, a build ID and a comment.
func synthetic() *profile.Profile {
	kern := &profile.Mapping{ID: 1, Start: 0xffffffff81000000, Limit: 0xffffffffa0000000, File: "[kernel.kallsyms]"}
	exe := &profile.Mapping{ID: 2, Start: 0x400000, Limit: 0x500000, Offset: 0x1000, File: "/usr/bin/app", BuildID: "abcdef0123"}
	fa := &profile.Function{ID: 1, Name: "main", SystemName: "main", Filename: "app.c"}
	fb := &profile.Function{ID: 2, Name: "inlined", SystemName: "inlined", Filename: "app.h"}
	fk := &profile.Function{ID: 3, Name: "schedule", SystemName: "schedule"}
	la := &profile.Location{ID: 1, Mapping: exe, Address: 0x401234, Line: []profile.Line{{Function: fb, Line: 7}, {Function: fa, Line: 42, Column: 3}}}
	lk := &profile.Location{ID: 2, Mapping: kern, Address: 0xffffffff81234567, Line: []profile.Line{{Function: fk}}}
	return &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}, {Type: "offcpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"}, Period: 10101010,
		TimeNanos: 1_700_000_000_000_000_000, DurationNanos: 5e9,
		Comments: []string{"ember: 0 stacks lost"},
		Mapping:  []*profile.Mapping{kern, exe}, Function: []*profile.Function{fa, fb, fk}, Location: []*profile.Location{la, lk},
		Sample: []*profile.Sample{
			{Location: []*profile.Location{la}, Value: []int64{3, 30303030, 0},
				Label: map[string][]string{"comm": {"app"}, "cgroup": {"/system.slice/docker-" + id64 + ".scope"}}, NumLabel: map[string][]int64{"pid": {42}, "tid": {43}}},
			{Location: []*profile.Location{lk, la}, Value: []int64{0, 0, 5e8},
				Label: map[string][]string{"comm": {"app"}, "state": {"sleeping"}}, NumLabel: map[string][]int64{"pid": {42}, "tid": {44}}},
			{Location: []*profile.Location{la}, Value: []int64{1, 10101010, 0},
				Label: map[string][]string{"comm": {"other"}}, NumLabel: map[string][]int64{"pid": {7}}},
		},
	}
}

const id64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestRoundTrip: a profile through Marshal and Unmarshal keeps its samples,
// stacks (functions, lines, inlining), mappings with build IDs, labels and
// comments; and the resources say which process and container.
func TestRoundTrip(t *testing.T) {
	p := synthetic()
	b, err := Marshal(p, Options{ByProcess: true, Resource: []Attr{{AttrHostName, "h"}}})
	if err != nil {
		t.Fatal(err)
	}
	q, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.CheckValid(); err != nil {
		t.Fatal(err)
	}
	if diff := Compare(p, q); diff != "" {
		t.Fatal(diff)
	}
	var req = mustReq(t, b)
	if n := len(req.ResourceProfiles); n != 2 {
		t.Fatalf("%d resources, want one per process (2)", n)
	}
	attrs := map[string]string{}
	for _, kv := range req.ResourceProfiles[0].Resource.Attributes {
		attrs[kv.Key] = kv.Value.String()
	}
	for _, k := range []string{AttrHostName, AttrPID, AttrServiceName, AttrContainerID} {
		if attrs[k] == "" {
			t.Errorf("resource of pid 42 has no %s: %v", k, attrs)
		}
	}
}

// TestSampleTypes: a sink can send one sample type only.
func TestSampleTypes(t *testing.T) {
	req, err := Convert(synthetic(), Options{SampleTypes: []string{"samples"}})
	if err != nil {
		t.Fatal(err)
	}
	ps := req.ResourceProfiles[0].ScopeProfiles[0].Profiles
	if len(ps) != 1 || ps[0].Period != 10101010 || len(ps[0].Samples) != 2 {
		t.Fatalf("want one samples/count profile with the period and 2 samples, got %v", ps)
	}
	if _, err := Convert(synthetic(), Options{SampleTypes: []string{"nope"}}); err == nil {
		t.Fatal("no error for a missing sample type")
	}
}

// FuzzUnmarshal: a request from anywhere is read or refused, never a panic.
func FuzzUnmarshal(f *testing.F) {
	b, _ := Marshal(synthetic(), Options{ByProcess: true})
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Unmarshal(data)
		if err == nil && p == nil {
			t.Fatal("nil profile without an error")
		}
	})
}

func mustReq(t *testing.T, b []byte) *collReq {
	t.Helper()
	var req collReq
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	return &req
}
