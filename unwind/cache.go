package unwind

import (
	"container/list"
	"fmt"
	"sync"
)

// Cache holds built tables by build ID within a byte budget, evicting the
// least recently used. A table is built once per build ID even when many
// goroutines ask for it at the same time; the others wait for that build.
// Failed builds are cached too (as a small entry), so that a binary without
// usable frame information is not parsed again on every new process.
type Cache struct {
	mu       sync.Mutex
	budget   int64
	used     int64
	lru      *list.List // of *cacheEntry, most recent first
	entries  map[string]*list.Element
	inflight map[string]*call

	builders chan struct{} // semaphore of background builds

	hits, misses, evictions uint64
}

type cacheEntry struct {
	key   string
	table *Table
	err   error
	size  int64
}

type call struct {
	done  chan struct{}
	table *Table
	err   error
}

// failedEntrySize is what a cached failure counts against the budget.
const failedEntrySize = 64

// NewCache returns a cache whose tables take at most budget bytes of memory.
// At most builders tables are built in the background at once (Prefetch).
func NewCache(budget int64, builders int) *Cache {
	return &Cache{
		builders: make(chan struct{}, max(builders, 1)),
		budget:   budget,
		lru:      list.New(),
		entries:  make(map[string]*list.Element),
		inflight: make(map[string]*call),
	}
}

// Get returns the cached table of buildID without building it: ok is false
// if it is not cached. It never blocks on a build, so a sampling path can
// call it and fall back to frame pointers.
func (c *Cache) Get(buildID string) (t *Table, err error, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[buildID]
	if !ok {
		c.misses++
		return nil, nil, false
	}
	c.hits++
	c.lru.MoveToFront(el)
	e := el.Value.(*cacheEntry)
	return e.table, e.err, true
}

// GetOrBuild returns the table of buildID, calling build if it is not cached.
// Concurrent calls for the same build ID share one build.
func (c *Cache) GetOrBuild(buildID string, build func() (*Table, error)) (*Table, error) {
	c.mu.Lock()
	if el, ok := c.entries[buildID]; ok {
		c.hits++
		c.lru.MoveToFront(el)
		e := el.Value.(*cacheEntry)
		c.mu.Unlock()
		return e.table, e.err
	}
	c.misses++
	if cl, ok := c.inflight[buildID]; ok {
		c.mu.Unlock()
		<-cl.done
		return cl.table, cl.err
	}
	cl := &call{done: make(chan struct{})}
	c.inflight[buildID] = cl
	c.mu.Unlock()

	func() {
		defer func() {
			if r := recover(); r != nil {
				cl.err = errPanic(r)
			}
		}()
		cl.table, cl.err = build()
	}()

	c.mu.Lock()
	delete(c.inflight, buildID)
	c.addLocked(buildID, cl.table, cl.err)
	c.mu.Unlock()
	close(cl.done)
	return cl.table, cl.err
}

// Prefetch starts building the table of buildID in the background, unless it
// is cached or being built, and returns at once; done (if not nil) is called
// when the table is ready. This is how a new process's binaries are loaded
// without stalling the sampling path: its mappings use frame pointers until
// done fires.
func (c *Cache) Prefetch(buildID string, build func() (*Table, error), done func(*Table, error)) {
	c.mu.Lock()
	_, cached := c.entries[buildID]
	_, building := c.inflight[buildID]
	c.mu.Unlock()
	if cached || building {
		if cached && done != nil {
			go func() { done(c.GetOrBuild(buildID, build)) }()
		}
		return
	}
	go func() {
		c.builders <- struct{}{}
		t, err := c.GetOrBuild(buildID, build)
		<-c.builders
		if done != nil {
			done(t, err)
		}
	}()
}

// Add stores a table (or the error building it) under buildID.
func (c *Cache) Add(buildID string, t *Table, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addLocked(buildID, t, err)
}

func (c *Cache) addLocked(key string, t *Table, err error) {
	size := int64(failedEntrySize)
	if t != nil {
		size += t.memSize()
	}
	if el, ok := c.entries[key]; ok {
		c.removeLocked(el)
	}
	if size > c.budget {
		return // would evict everything and still not fit
	}
	for c.used+size > c.budget {
		c.removeLocked(c.lru.Back())
		c.evictions++
	}
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, table: t, err: err, size: size})
	c.used += size
}

func (c *Cache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.entries, e.key)
	c.used -= e.size
}

// CacheStats are counters of a Cache.
type CacheStats struct {
	Entries                 int
	Bytes, Budget           int64
	Hits, Misses, Evictions uint64
}

// Stats returns the cache's counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{
		Entries: len(c.entries), Bytes: c.used, Budget: c.budget,
		Hits: c.hits, Misses: c.misses, Evictions: c.evictions,
	}
}

func errPanic(r any) error { return fmt.Errorf("%w: building table panicked: %v", ErrInternal, r) }
