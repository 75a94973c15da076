package agent

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/google/pprof/profile"
)

// soakLikeProfile is an interval as the agent splits it: samples with the
// labels the collector puts on them (service, comm, thread, pid, tid),
// stacks of depth frames over shared locations.
func soakLikeProfile(samples, depth int) *profile.Profile {
	m := &profile.Mapping{ID: 1, File: "/usr/lib/x86_64-linux-gnu/libc.so.6", BuildID: "0123456789abcdef0123456789abcdef01234567"}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"}, Period: 1,
		Mapping: []*profile.Mapping{m},
	}
	for i := range 4 * depth {
		f := &profile.Function{ID: uint64(i + 1), Name: fmt.Sprintf("function_number_%d", i), Filename: "/build/src/file.c"}
		p.Function = append(p.Function, f)
		p.Location = append(p.Location, &profile.Location{ID: uint64(i + 1), Mapping: m, Address: uint64(0x1000 + 16*i),
			Line: []profile.Line{{Function: f, Line: int64(i)}}})
	}
	for i := range samples {
		var locs []*profile.Location
		for j := range depth {
			locs = append(locs, p.Location[(i+j)%len(p.Location)])
		}
		p.Sample = append(p.Sample, &profile.Sample{Location: locs, Value: []int64{1, 10000000},
			Label:    map[string][]string{"service_name": {"svc3"}, "comm": {"svc3"}, "thread": {"svc3"}},
			NumLabel: map[string][]int64{"pid": {int64(10000 + i)}, "tid": {int64(10000 + i)}}})
	}
	return p
}

// TestProfileBytesNearTheHeap: the ship queue's budget counts profiles by
// profileBytes, so it must not undercount what a compacted profile holds
// on the heap (its samples' three label maps each, most of it), nor count
// it several times over (the queue would drop intervals it has room for).
func TestProfileBytesNearTheHeap(t *testing.T) {
	src := soakLikeProfile(20000, 12)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	q := src.Compact()
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	est := profileBytes(q)
	runtime.KeepAlive(q)
	t.Logf("%d samples: heap %d bytes, estimate %d (%.2f)", len(q.Sample), heap, est, float64(est)/float64(heap))
	if est < heap*8/10 || est > heap*3/2 {
		t.Errorf("estimate %d bytes for a profile holding %d on the heap: not within 0.8-1.5 times", est, heap)
	}
}
