package agent

import (
	"time"
	"unsafe"

	"github.com/emberprof/ember/internal/tracer"
)

// drained is one drain's output on its way from the drain loop to the
// collect loop, which adds its samples to the current interval. A drain
// that ends an interval (cut) carries the interval's end.
type drained struct {
	samples []tracer.Sample
	exited  []int // processes whose last samples are in samples: marked exited once added
	at      time.Time
	bytes   int64 // samplesBytes(samples), for the queue's budget
	// shed: the samples did not fit in the queue and were let go; the
	// interval they belong to is dropped whole (stage collect).
	shed bool

	cut      bool      // the interval ends with this drain
	end      time.Time // its end, when cut
	last     bool      // the partial interval at shutdown
	deadline time.Time // when last: how long its hand-over may wait
}

// collectQueue holds drains for the collect loop within a byte budget. The
// drain loop never waits on it: a push takes the queue's lock for an append,
// and one whose samples do not fit gives them up (shed) but is queued all
// the same, so that its exits and its interval's cut reach the collect
// loop in order. It always takes a drain's samples when nothing else
// waits, however many, and those of the last drain (shutdown's). Budget 0
// holds one drain's samples.
type collectQueue struct {
	byteQueue[*drained] // bytes: of the samples waiting or being added
}

func newCollectQueue(budget int64) *collectQueue {
	q := &collectQueue{}
	q.init(budget)
	return q
}

// push queues d, first letting its samples go (d.shed) when they do not fit.
func (q *collectQueue) push(d *drained) {
	d.bytes = samplesBytes(d.samples)
	q.mu.Lock()
	defer q.mu.Unlock()
	if !d.last && q.bytes > 0 && (q.budget == 0 || q.bytes+d.bytes > q.budget) {
		d.samples, d.bytes, d.shed = nil, 0, true
	}
	q.appendLocked(d, d.bytes)
}

// added says the collect loop is done with d's samples.
func (q *collectQueue) added(d *drained) {
	q.release(d.bytes)
	d.samples = nil
}

// sampleSize is the Go heap of a Sample less its stacks and names.
const sampleSize = int64(unsafe.Sizeof(tracer.Sample{}))

// samplesBytes estimates the Go heap that samples hold: the samples, their
// stacks, names and wakers.
func samplesBytes(samples []tracer.Sample) int64 {
	n := int64(cap(samples)) * sampleSize
	for i := range samples {
		s := &samples[i]
		n += 8*int64(cap(s.User)+cap(s.Kernel)) + int64(len(s.Comm))
		if w := s.Waker; w != nil {
			n += 128 + 8*int64(cap(w.User)+cap(w.Kernel)) + int64(len(w.Comm))
		}
	}
	return n
}

// collectLoop adds each drain's samples to the current interval, marks the
// processes whose last samples they were exited, and hands each finished
// interval to the symbolizer without waiting (but for the last, until its
// deadline). It is where the work of a drain is done that the drain loop
// must not wait for: reading the /proc files of processes first seen,
// opening their jitdump files, and building the profile's stacks and
// labels. An interval any of whose drains was shed is dropped whole and
// counted (stage collect).
func (a *Agent) collectLoop(q *collectQueue, symQ chan<- *interval, start time.Time) {
	defer close(symQ)
	iv := a.newInterval(start)
	for d := q.pop(); d != nil; d = q.pop() {
		iv.shed = iv.shed || d.shed
		if !iv.shed && len(d.samples) > 0 {
			a.health.busy(stageCollect, d.at)
			iv.col.add(d.samples)
			a.health.idle(stageCollect)
		}
		q.added(d)
		for _, pid := range d.exited {
			a.procs.MarkExited(pid)
		}
		if !d.cut {
			continue
		}
		a.finish(iv, d.end)
		switch {
		case iv.shed:
			a.dropInterval(stageCollect, iv)
			a.lastShed.Store(d.last)
		case d.last:
			iv.last = true
			t := time.NewTimer(time.Until(d.deadline))
			select {
			case symQ <- iv:
			case <-t.C:
				a.dropInterval(stageShutdown, iv)
			}
			t.Stop()
		default:
			select {
			case symQ <- iv:
			default:
				a.dropInterval(stageSymbolize, iv)
			}
		}
		iv = a.newInterval(d.end)
	}
}
