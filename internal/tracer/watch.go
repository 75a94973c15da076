package tracer

import (
	"log/slog"
	"slices"
	"time"
)

// The tracer's watch looks, every watchInterval, for what its events miss:
// processes whose exit was not told (here) and CPUs brought online after
// start (hotplug.go).
//
// The tracer learns of processes from events, and an event can be lost: the
// ring buffer is full when a burst of processes exits. A process whose exit
// was missed would keep its table entry, its held files and its unwind
// entry for ever. So every watchInterval the tracer looks at /proc for the
// processes it holds that no longer run (proc.Table.Gone), and treats each
// as exited: marked at the next drain, as an exit event would have it, and
// its unwind entry unloaded.

// watchInterval is how often the tracer looks for what its events missed.
var watchInterval = 5 * time.Second

// watch runs the periodic checks until stop is closed.
func (t *Tracer) watch(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			t.sweepMissedExits()
			t.watchCPUs()
		}
	}
}

// sweepMissedExits treats the processes that no longer run, though no exit
// event said so, as exited.
func (t *Tracer) sweepMissedExits() {
	gone := t.procs.Gone()
	t.exitMu.Lock()
	gone = slices.DeleteFunc(gone, func(pid int) bool { return slices.Contains(t.exits, pid) })
	t.exits = append(t.exits, gone...)
	t.exitMu.Unlock()
	if len(gone) > 0 {
		t.missedExits.Add(uint64(len(gone)))
		slog.Debug("processes whose exit event was missed", "pids", gone)
	}
	if t.unw != nil {
		// Unwind entries of processes the table has forgotten or that no
		// longer run, whether their exit job was dropped (a full queue)
		// or their exit event was: the worker unloads them.
		t.unw.enqueueSweep()
	}
}

// testHookDropEvent, if set, is asked about each process event: true drops
// it, as a full ring buffer would.
var testHookDropEvent func(typ uint32, pid int) bool
