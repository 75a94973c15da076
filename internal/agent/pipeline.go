package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/export/sink"
)

// The agent is a pipeline of four loops joined by bounded queues:
//
//	drain (every second, on time) -> [drains] -> collect -> [1 interval] -> symbolize -> [bytes] -> ship (sink.Enqueue)
//
// Draining never waits for the stages after it, nor takes a lock they hold
// for long: it reads the kernel maps and queues what it read. When the
// collect loop (adding samples to the interval: /proc reads of new
// processes), the symbolizer (a cold DWARF index, a debuginfod fetch) or
// the sinks (a slow disk) fall behind, the interval that finds its queue
// full is dropped whole and counted (ember_intervals_dropped_total{stage}),
// so the kernel maps keep being emptied on schedule and stay within the
// size they were given for one drain. /healthz says which stage is late
// and why.

// interval is one interval's samples on their way to the sinks.
type interval struct {
	col        *collector
	start, end time.Time
	stats      map[string]uint64 // the kernel counters at its end, for the profile's comments
	last       bool              // the partial interval at shutdown: waited for, never dropped
	shed       bool              // a drain of it was shed (collectQueue): dropped whole
}

// The stages, as named in ember_intervals_dropped_total and /healthz.
const (
	stageCollect   = "collect"   // the collect loop was behind: a drain's samples did not fit in its queue
	stageSymbolize = "symbolize" // the symbolizer was still busy when an interval ended
	stageShip      = "ship"      // the sinks were still busy with a symbolized interval
	stageShutdown  = "shutdown"  // the last interval was not handed over within --shutdown-timeout
)

// lateDrain is how long after the previous drain a drain counts as late.
const lateDrain = 2 * agentDrainEvery

// Run samples until ctx ends, emitting a profile per service every
// interval; at the end it drains once more, symbolizes and ships the last
// partial interval and closes the sinks, all within FlushTimeout. Its error
// says what was not delivered.
func (a *Agent) Run(ctx context.Context) error {
	collectQ := newCollectQueue(a.cfg.Memory.CollectBytes)
	symQ := make(chan *interval, 1)
	shipQ := newShipQueue(a.cfg.Memory.ShipBytes)
	symDone, shipDone := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go a.collectLoop(collectQ, symQ, start)
	go func() { defer close(symDone); a.symbolizeLoop(symQ, shipQ) }()
	go func() { defer close(shipDone); a.shipLoop(shipQ) }()
	deadline := a.drainLoop(ctx, collectQ, start)

	flush, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var errs []error
	select {
	case <-shipDone:
	case <-flush.Done():
		errs = append(errs, fmt.Errorf("the last interval was not symbolized and handed to the sinks within --shutdown-timeout (%v)", a.cfg.FlushTimeout))
	}
	if err := a.cfg.Sink.Close(flush); err != nil {
		errs = append(errs, fmt.Errorf("flush sinks: %w", err))
	}
	select {
	case <-symDone:
		a.close()
	default:
		a.tr.Close() // the symbolizer is still at work: leave its files open, the process is exiting
	}
	if n := a.drops.get(stageShutdown); n > 0 {
		errs = append(errs, fmt.Errorf("%d interval(s) dropped at shutdown", n))
	}
	if a.lastShed.Load() {
		errs = append(errs, errors.New("the last interval was dropped: the collect stage was behind (counted at stage collect)"))
	}
	return errors.Join(errs...)
}

// drainLoop empties the kernel maps every agentDrainEvery and queues what
// it read for the collect loop, marking the drain that ends each interval,
// without waiting. When ctx ends it drains once more, waiting for the
// stacks still being walked, and queues the partial interval with its
// deadline, FlushTimeout from then, which it returns as the shutdown's.
func (a *Agent) drainLoop(ctx context.Context, q *collectQueue, start time.Time) time.Time {
	defer q.close()
	if restore, err := boostDrainThread(); err != nil {
		a.log.Debug("drain at the agent's priority", "err", err)
	} else {
		defer restore()
	}
	drain := time.NewTicker(agentDrainEvery)
	defer drain.Stop()
	emit := time.NewTicker(a.cfg.Interval)
	defer emit.Stop()
	a.health.drained(start)
	for {
		select {
		case <-ctx.Done():
			deadline := time.Now().Add(a.cfg.FlushTimeout)
			d := a.drain(true)
			d.cut, d.end, d.last, d.deadline = true, time.Now(), true, deadline
			q.push(d)
			return deadline
		case <-drain.C:
			q.push(a.drain(false))
		case now := <-emit.C:
			d := a.drain(false)
			d.cut, d.end = true, now
			q.push(d)
		}
	}
}

func (a *Agent) newInterval(start time.Time) *interval {
	return &interval{col: a.newCollector(start), start: start}
}

// drain reads the kernel maps' samples; the last one (final) waits for the
// stacks still being walked from their copies, earlier ones never do. A
// drain is late when it starts late: stamped at its end, the last one was
// counted late by its wait for the walks (3.1 s after the one before at the
// end of a soak whose health report, taken just before, said 0 late), and a
// drain that overran still makes the next one start late.
//
// A late drain says how long the one before took to read the maps and how
// long after its end this one started: a drain that overran and a drain
// loop that was not run on time are told apart.
func (a *Agent) drain(final bool) *drained {
	start := time.Now()
	if late := a.health.drained(start); late > 0 {
		p := a.prevDrain
		a.log.Warn("kernel maps drained late", "after", late.Round(time.Millisecond),
			"previous_read", p.read.Round(time.Millisecond),
			"since_previous_end", start.Sub(p.end).Round(time.Millisecond))
	}
	samples, exited, err := a.tr.DrainQueued(final)
	end := time.Now()
	a.prevDrain = drainTiming{read: end.Sub(start), end: end}
	if err != nil {
		a.log.Error("drain kernel maps", "err", err)
	}
	return &drained{samples: samples, exited: exited, at: start}
}

// drainTiming is how long a drain took to read the kernel maps, and when it
// ended. The drain loop's alone.
type drainTiming struct {
	read time.Duration
	end  time.Time
}

func (a *Agent) finish(iv *interval, end time.Time) {
	iv.end = end
	a.intervals.Add(1)
	if a.tr == nil {
		return // a test of the loops alone
	}
	if st, err := a.tr.Stats(); err == nil {
		iv.stats = st
	}
}

// dropInterval counts an interval shed at stage and says so, naming the
// stage that is busy and for how long.
func (a *Agent) dropInterval(stage string, iv *interval) {
	iv.col.close()
	n := a.drops.add(stage)
	busy, since := a.health.busyWith()
	a.log.Warn("interval dropped: a later stage is behind", "stage", stage, "interval_end", iv.end.Format(time.TimeOnly),
		"busy", busy, "busy_for", since.Round(time.Second), "dropped_total", n)
}

// shipment is one interval's profiles for the sinks.
type shipment struct {
	end      time.Time
	profiles []sink.Profile
	last     bool
	bytes    int64 // profileBytes of its profiles, for the ship queue's budget
}

// symbolizeLoop turns each interval into its profiles and hands them to the
// ship loop without waiting (except for the last), then forgets processes
// that exited.
func (a *Agent) symbolizeLoop(symQ <-chan *interval, shipQ *shipQueue) {
	defer shipQ.close()
	for iv := range symQ {
		a.health.busy(stageSymbolize, iv.end)
		sh := &shipment{end: iv.end, profiles: a.profiles(iv), last: iv.last}
		a.health.idle(stageSymbolize)
		a.sym.GiveBack() // until the next interval's lookups
		a.procs.Sweep()
		a.refreshGoLimit()
		if len(sh.profiles) == 0 {
			a.empty.Add(1) // nothing sampled: nothing to ship, nothing lost
			continue
		}
		for _, p := range sh.profiles {
			sh.bytes += profileBytes(p.Profile)
		}
		if !shipQ.push(sh) {
			a.dropInterval(stageShip, iv)
		}
	}
}

// profiles finishes iv's profile, symbolizes it once and splits it per
// service (and kind).
func (a *Agent) profiles(iv *interval) []sink.Profile {
	defer iv.col.close() // the perf maps it held for symbolizing
	p := iv.col.b.Profile(iv.end)
	if iv.stats != nil {
		p.Comments = append(p.Comments, "ember: "+statsLine(iv.stats))
	}
	if n := iv.col.unmapped; n > 0 {
		p.Comments = append(p.Comments, fmt.Sprintf("ember: this interval: %s=%d", UnmappedStat, n))
	}
	if len(p.Sample) == 0 {
		return nil
	}
	// The interval's own collector knows which process each mapping came
	// from, and gives its files (held in the process table's cache).
	if err := a.sym.SymbolizeFrom(p, iv.col.open, iv.col.object); err != nil {
		a.log.Debug("symbolize", "err", err)
	}
	if a.cfg.Mode != pprof.ModeCPU {
		annotateOffCPU(p)
	}
	out := a.split(p)
	for i := range out {
		out[i].Time = iv.end
	}
	return out
}

// shipLoop hands each interval's profiles to the sinks.
func (a *Agent) shipLoop(shipQ *shipQueue) {
	for sh := shipQ.pop(); sh != nil; sh = shipQ.pop() {
		a.health.busy(stageShip, sh.end)
		for i, out := range sh.profiles {
			if err := a.cfg.Sink.Enqueue(out); err != nil {
				a.log.Warn("profile refused by a sink", "service", out.Service, "name", out.Name, "err", err)
			}
			sh.profiles[i] = sink.Profile{} // the sinks have it (encoded or written): free it
		}
		shipQ.shipped(sh)
		a.health.idle(stageShip)
	}
}
