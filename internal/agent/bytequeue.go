package agent

import "sync"

// byteQueue is a FIFO whose items count against a byte budget from the
// moment they are queued until their consumer is done with them (release),
// so that the item being worked on is counted as much as the waiting ones.
// It is what the collect and ship queues share; admission is theirs (the
// collect queue sheds a drain's samples, the ship queue refuses an
// interval), decided under mu before appendLocked.
type byteQueue[T any] struct {
	mu     sync.Mutex
	cond   *sync.Cond
	budget int64
	bytes  int64 // of the items waiting or being worked on
	items  []T
	closed bool
}

func (q *byteQueue[T]) init(budget int64) {
	q.budget = budget
	q.cond = sync.NewCond(&q.mu)
}

// appendLocked queues item, of n bytes; q.mu is held.
func (q *byteQueue[T]) appendLocked(item T, n int64) {
	q.items = append(q.items, item)
	q.bytes += n
	q.cond.Signal()
}

// pop returns the oldest item, waiting for one; the zero T once the queue
// is closed and empty. Its bytes stay counted until released.
func (q *byteQueue[T]) pop() T {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	var item T
	if len(q.items) == 0 {
		return item
	}
	item, q.items[0] = q.items[0], item
	q.items = q.items[1:]
	return item
}

// release says the consumer is done with n bytes it popped.
func (q *byteQueue[T]) release(n int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.bytes -= n
}

// close lets pop return the zero T once the queue is empty.
func (q *byteQueue[T]) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
}
