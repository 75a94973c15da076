package tracer

import (
	"slices"
	"time"
)

// A sample whose user stack (or whose waker's) the kernel copied is handed
// on once user space has walked the copy (stackcopy.go), which waits for the
// process's unwind tables: a few milliseconds, or seconds when the table
// worker is behind (a busy host starting processes by the dozen). record's
// Drain waits for the walks, up to stackCopyWait. The agent's drain loop
// must not wait (its drains are on time whatever the rest does), so with
// Config.DrainNoWait a sample whose copy is not walked yet is held back and
// returned by a later Drain, as soon as it is walked, or marked not walked
// once stackCopyWait has passed since its own drain. The exit of a process
// with a sample held back waits for the drain that returns it, so that its
// mappings are still known then.

// copyWait is what a drained sample waits for: its copies' ids (-1: none)
// and the walks taken so far.
type copyWait struct {
	user, waker int64
	count       uint64 // the sample's count, for unwind_stack_copy_not_walked
	until       time.Time
	walks       map[uint64]walkedCopy
}

// needs returns the ids of c not walked yet.
func (c *copyWait) needs() []uint64 {
	var ids []uint64
	for _, id := range []int64{c.user, c.waker} {
		if _, ok := c.walks[uint64(id)]; id >= 0 && !ok {
			ids = append(ids, uint64(id))
		}
	}
	return ids
}

// settleCopies fills the stacks of the samples of this drain (out) and of
// earlier ones (t.held) whose copies are walked, waiting for them unless
// DrainNoWait (and not final), and returns the samples to hand on, with the
// exited processes that may go now: those with no sample held back.
func (t *Tracer) settleCopies(out []Sample, exited []int, final bool) ([]Sample, []int) {
	now := time.Now()
	waiting := t.held
	t.held = nil
	out = slices.DeleteFunc(out, func(s Sample) bool {
		if s.copies == nil {
			return false
		}
		s.copies.until = now.Add(stackCopyWait)
		if t.copies != nil {
			s.copies.until = now.Add(t.copies.wait)
		}
		waiting = append(waiting, s)
		return true
	})
	if len(waiting) == 0 {
		return out, exited
	}
	var ids []uint64
	for _, s := range waiting {
		ids = append(ids, s.copies.needs()...)
	}
	// Wait for the walks: record, the last drain, or no walker to wait on.
	block := final || !t.cfg.DrainNoWait || t.copies == nil
	deadline := now // else only what is walked already
	if block {
		deadline = now.Add(stackCopyWait)
		if t.copies != nil {
			deadline = now.Add(t.copies.wait)
		}
	}
	var walked map[uint64]walkedCopy
	if t.copies != nil && len(ids) > 0 {
		walked = t.copies.takeUntil(ids, deadline)
	}
	now = time.Now()
	held := map[int]bool{}
	for _, s := range waiting {
		c := s.copies
		for _, id := range c.needs() {
			if w, ok := walked[id]; ok {
				if c.walks == nil {
					c.walks = map[uint64]walkedCopy{}
				}
				c.walks[id] = w
			}
		}
		if len(c.needs()) > 0 && now.Before(c.until) && !block {
			t.held = append(t.held, s)
			held[int(s.PID)] = true
			continue
		}
		if c.user >= 0 {
			t.copies.fill(&s, c.walks, c.user, c.count)
		}
		if c.waker >= 0 && s.Waker != nil {
			var ws Sample
			t.copies.fill(&ws, c.walks, c.waker, c.count)
			w := s.Waker
			w.User, w.UserErr, w.UserTables, w.UserReason = ws.User, ws.UserErr, ws.UserTables, ws.UserReason
		}
		s.copies = nil
		out = append(out, s)
	}
	if len(held) > 0 {
		// Their exit waits for the drain that hands their samples on.
		exited = slices.DeleteFunc(exited, func(pid int) bool {
			if held[pid] {
				t.exitMu.Lock()
				t.exits = append(t.exits, pid)
				t.exitMu.Unlock()
				return true
			}
			return false
		})
	}
	return out, exited
}
