package agent

import (
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/tracer"
)

// The collect queue never refuses a drain: one whose samples do not fit
// gives them up (shed) and is queued with its exits and its cut, in order;
// an empty queue takes any drain's samples, the last drain's always.
func TestCollectQueueShedsSamplesKeepsOrder(t *testing.T) {
	many := make([]tracer.Sample, 100)
	one := samplesBytes(many)
	q := newCollectQueue(one + one/2)
	q.push(&drained{samples: many, exited: []int{1}})
	q.push(&drained{samples: make([]tracer.Sample, 100), exited: []int{2}, cut: true})
	q.push(&drained{samples: make([]tracer.Sample, 100), exited: []int{3}, last: true, cut: true})
	var got []*drained
	for range 3 {
		d := q.pop()
		got = append(got, d)
		q.added(d)
	}
	if got[0].shed || len(got[0].samples) != 0 || got[0].exited[0] != 1 {
		t.Errorf("first drain: shed %v, exited %v", got[0].shed, got[0].exited)
	}
	if !got[1].shed || got[1].bytes != 0 || !got[1].cut || got[1].exited[0] != 2 {
		t.Errorf("second drain, over the budget: shed %v, bytes %d, cut %v, exited %v; want shed with its cut and exits",
			got[1].shed, got[1].bytes, got[1].cut, got[1].exited)
	}
	if got[2].shed || got[2].exited[0] != 3 {
		t.Errorf("the last drain was shed")
	}
	if q.bytes != 0 {
		t.Errorf("%d bytes counted after every drain was added", q.bytes)
	}
	huge := make([]tracer.Sample, 10000)
	q.push(&drained{samples: huge})
	if d := q.pop(); d.shed {
		t.Error("an empty queue shed a drain larger than its budget")
	}
	q.close()
	if d := q.pop(); d != nil {
		t.Errorf("pop after close: %+v", d)
	}
}

// The collect loop drops an interval any of whose drains was shed, whole,
// and counts it at stage collect; it hands the others to the symbolizer and
// marks each drain's exited processes once their samples are added.
func TestCollectLoopDropsShedIntervalWhole(t *testing.T) {
	pid := os.Getpid()
	procs := proc.NewTable()
	defer procs.Close()
	a := &Agent{cfg: Config{Mode: pprof.ModeCPU, Tracer: tracer.Config{Frequency: 19}},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), procs: procs}
	smp := []tracer.Sample{{PID: uint32(pid), TID: uint32(pid), Kind: tracer.KindOnCPU, Count: 1, Comm: "test"}}
	q := newCollectQueue(0)
	symQ := make(chan *interval, 4)
	start := time.Now()
	for _, d := range []*drained{
		{samples: smp},
		{samples: smp, cut: true, end: start.Add(time.Second)},
		{samples: smp},
		{shed: true, exited: []int{pid}},
		{samples: smp, cut: true, end: start.Add(2 * time.Second)},
		{samples: smp, cut: true, end: start.Add(3 * time.Second)},
	} {
		d.samples = append([]tracer.Sample(nil), d.samples...)
		q.items = append(q.items, d) // as pushed, shed or not
	}
	q.close()
	a.collectLoop(q, symQ, start)
	var ends []time.Time
	for iv := range symQ {
		ends = append(ends, iv.end)
		if p := iv.col.b.Profile(iv.end); len(p.Sample) == 0 {
			t.Errorf("interval ending %v handed over without its samples", iv.end)
		}
		iv.col.close()
	}
	if len(ends) != 2 || !ends[0].Equal(start.Add(time.Second)) || !ends[1].Equal(start.Add(3*time.Second)) {
		t.Errorf("intervals handed over: %v; want the first and the third", ends)
	}
	if procs.Sweep(); procs.Get(pid) != nil {
		t.Error("the process whose exit a shed drain carried was not marked exited")
	}
	if n := a.drops.get(stageCollect); n != 1 || a.intervals.Load() != 3 {
		t.Errorf("dropped at collect %d of %d intervals; want 1 of 3", n, a.intervals.Load())
	}
}
