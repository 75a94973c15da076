package agent

import (
	"github.com/google/pprof/profile"
)

// shipQueue holds symbolized intervals for the ship loop within a byte
// budget, not a count: behind a sink that is briefly slow (an fsync, a
// burst of services) several small intervals wait, where a count of one
// dropped all but one; a large interval waits alone. The budget counts the
// interval the sinks are taking too (popped, until shipped): that one is
// heap as much as the waiting ones, and the 10-minute soak's peaks were an
// interval at the slow sink, one waiting and one being split. An interval
// that does not fit is dropped whole by the caller and counted (stage
// ship); the queue always takes one interval when nothing waits or ships,
// however large, and always the last (shutdown's, waited for). Budget 0
// holds one waiting interval.
type shipQueue struct {
	byteQueue[*shipment] // bytes: of the intervals waiting or shipping
}

func newShipQueue(budget int64) *shipQueue {
	q := &shipQueue{}
	q.init(budget)
	return q
}

// push queues sh, or reports false when it does not fit.
func (q *shipQueue) push(sh *shipment) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !sh.last {
		if q.budget == 0 && len(q.items) > 0 || q.budget > 0 && q.bytes > 0 && q.bytes+sh.bytes > q.budget {
			return false
		}
	}
	q.appendLocked(sh, sh.bytes)
	return true
}

// shipped says the sinks are done with sh, popped before.
func (q *shipQueue) shipped(sh *shipment) { q.release(sh.bytes) }

// profileBytes estimates the Go heap a profile holds: its samples (values,
// location references, labels), locations and their lines, functions and
// mappings with their strings. An estimate for the queue's budget, within
// a factor of about two of what the heap profile shows, not an encoding.
func profileBytes(p *profile.Profile) int64 {
	if p == nil {
		return 0
	}
	n := int64(256)
	for _, s := range p.Sample {
		n += 64 + 8*int64(len(s.Value)+len(s.Location))
		for k, vs := range s.Label {
			n += 48 + int64(len(k))
			for _, v := range vs {
				n += 16 + int64(len(v))
			}
		}
		n += 48 * int64(len(s.NumLabel))
	}
	for _, l := range p.Location {
		n += 96 + 40*int64(len(l.Line))
	}
	for _, f := range p.Function {
		n += 96 + int64(len(f.Name)+len(f.SystemName)+len(f.Filename))
	}
	for _, m := range p.Mapping {
		n += 160 + int64(len(m.File)+len(m.BuildID))
	}
	for _, c := range p.Comments {
		n += 16 + int64(len(c))
	}
	return n
}
