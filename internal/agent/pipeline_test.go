package agent

import (
	"context"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/export/sink"
	"github.com/emberprof/ember/internal/testutil"
)

// slowSink takes delay for every profile it is given, as a slow disk or a
// blocking sink would.
type slowSink struct {
	delay    time.Duration
	profiles atomic.Int64
}

func (s *slowSink) Enqueue(sink.Profile) error {
	time.Sleep(s.delay)
	s.profiles.Add(1)
	return nil
}

func (s *slowSink) Close(context.Context) error { return nil }

// A sink far slower than the interval does not hold up draining: no drain is
// late, whole intervals are dropped at the ship stage and counted, /healthz
// names the stage at work, and SIGTERM (cancel) still ships the last
// interval within the shutdown timeout.
func TestPipelineShedsIntervalsNotDrains(t *testing.T) {
	testutil.RequireRoot(t)
	w := exec.Command("sh", "-c", "while :; do :; done")
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { w.Process.Kill(); w.Wait() }()
	slow := &slowSink{delay: 4 * time.Second}
	a, err := Start(Config{Tracer: tracerConfig(w.Process.Pid), Mode: pprof.ModeCPU, Interval: time.Second,
		Sink: slow, FlushTimeout: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	time.Sleep(9 * time.Second)
	ok, health := a.Health()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	drops := a.drops.all()
	t.Logf("healthz (ok=%v):\n%sdrops %v, late drains %d, profiles shipped %d", ok, health, drops, a.health.lateDrains(), slow.profiles.Load())
	// A drain that waited for the sink would come at least its 4 s late;
	// a loaded machine may delay one by a second or so (counted as late,
	// and logged: rerun before debugging).
	if gap := a.health.longestGap(); gap >= slow.delay {
		t.Errorf("drains %v apart behind a sink taking %v per profile: draining waited for it", gap, slow.delay)
	}
	if drops[stageShip] == 0 {
		t.Errorf("no interval dropped at the ship stage with a sink 4x slower than the interval: %v", drops)
	}
	if drops[stageShutdown] != 0 {
		t.Errorf("the last interval was dropped at shutdown: %v", drops)
	}
	if !strings.Contains(health, "ship: at work on the interval ending") || !strings.Contains(health, "intervals dropped at ship") {
		t.Errorf("/healthz does not say the ship stage is busy and dropping:\n%s", health)
	}
	if slow.profiles.Load() < 2 {
		t.Errorf("%d profiles shipped: want the first intervals and the last", slow.profiles.Load())
	}
}

// The ship queue holds symbolized intervals within its byte budget, the one
// shipping included: small ones queue behind one another, one that does not
// fit is refused (the caller drops and counts it), a queue with nothing
// waiting or shipping takes one interval however large, and the last
// interval is always taken.
func TestShipQueueBoundedByBytes(t *testing.T) {
	q := newShipQueue(1000)
	for _, c := range []struct {
		bytes int64
		last  bool
		want  bool
	}{{600, false, true}, {300, false, true}, {200, false, false}, {5000, true, true}} {
		if got := q.push(&shipment{bytes: c.bytes, last: c.last}); got != c.want {
			t.Errorf("push %d bytes (last %v) with %d queued: %v, want %v", c.bytes, c.last, q.bytes, got, c.want)
		}
	}
	var order []int64
	for range 3 {
		sh := q.pop()
		order = append(order, sh.bytes)
		if sh.bytes == 600 && q.push(&shipment{bytes: 200}) {
			// 600 ships, 300 and 5000 wait: 5900 of 1000.
			t.Error("a queue over its budget while an interval ships took another")
		}
		q.shipped(sh)
	}
	if order[0] != 600 || order[1] != 300 || order[2] != 5000 || q.bytes != 0 {
		t.Errorf("popped %v, %d bytes left; want 600 300 5000, 0", order, q.bytes)
	}
	if !q.push(&shipment{bytes: 4000}) {
		t.Error("an empty queue refused an interval larger than its budget")
	}
	big := q.pop()
	if q.push(&shipment{bytes: 10}) {
		t.Error("the queue took an interval while one over its budget was shipping")
	}
	q.shipped(big)
	if !q.push(&shipment{bytes: 10}) {
		t.Error("the queue refused an interval with nothing waiting or shipping")
	}
	q.pop()
	q.close()
	if sh := q.pop(); sh != nil {
		t.Errorf("pop after close: %+v", sh)
	}
	// Budget 0 (no --memory-limit plan) holds one interval, as before.
	one := newShipQueue(0)
	if !one.push(&shipment{bytes: 10}) || one.push(&shipment{bytes: 10}) {
		t.Error("a queue without a budget does not hold exactly one interval")
	}
}
