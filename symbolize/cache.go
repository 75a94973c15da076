package symbolize

import (
	"container/list"
	"sync"
)

// objectCache holds indexed objects keyed by objfile.Key: the build ID, or the file's
// identity for files without one, within a byte budget,
// evicting the least recently used. An object in use is reference counted
// and closed only when both evicted and released.
type objectCache struct {
	mu     sync.Mutex
	budget int64
	used   int64
	lru    *list.List // of *cacheEntry, most recent first
	byKey  map[string]*list.Element
}

type cacheEntry struct {
	keys []string // the build ID key and/or file identity keys
	obj  *Object
	cost int64
	refs int
	gone bool // evicted; close when refs drops to 0
}

func newObjectCache(budget int64) *objectCache {
	return &objectCache{budget: budget, lru: list.New(), byKey: make(map[string]*list.Element)}
}

// get returns the cached object for key, referenced; release it when done.
func (c *objectCache) get(key string) (*cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(el)
	e := el.Value.(*cacheEntry)
	e.refs++
	return e, true
}

// add inserts obj under key, referenced, and evicts to the budget. If key is
// already present (another goroutine won), obj is closed and the existing
// entry returned.
func (c *objectCache) add(key string, obj *Object) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		obj.Close()
		e := el.Value.(*cacheEntry)
		e.refs++
		c.lru.MoveToFront(el)
		return e
	}
	e := &cacheEntry{keys: []string{key}, obj: obj, cost: obj.Cost(), refs: 1}
	c.byKey[key] = c.lru.PushFront(e)
	c.used += e.cost
	c.evict()
	return e
}

// alias makes key another name of the entry (a file identity for an object
// cached by build ID), so that either finds it.
func (c *objectCache) alias(e *cacheEntry, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.gone {
		return
	}
	if _, ok := c.byKey[key]; ok {
		return
	}
	for el := c.lru.Front(); el != nil; el = el.Next() {
		if el.Value.(*cacheEntry) == e {
			c.byKey[key] = el
			e.keys = append(e.keys, key)
			return
		}
	}
}

// release drops a reference, accounts for memory the object grew by while in
// use, and evicts to the budget.
func (c *objectCache) release(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.refs--
	if e.gone {
		if e.refs == 0 {
			e.obj.Close()
		}
		return
	}
	if now := e.obj.Cost(); now != e.cost {
		c.used += now - e.cost
		e.cost = now
	}
	c.evict()
}

// drop removes e from the cache and releases the caller's reference: the
// object is closed once no one else uses it.
func (c *objectCache) drop(e *cacheEntry) {
	c.mu.Lock()
	if !e.gone {
		for el := c.lru.Front(); el != nil; el = el.Next() {
			if el.Value.(*cacheEntry) == e {
				c.lru.Remove(el)
				break
			}
		}
		for _, k := range e.keys {
			delete(c.byKey, k)
		}
		c.used -= e.cost
		e.gone = true
	}
	c.mu.Unlock()
	c.release(e)
}

// evict drops least recently used entries until the cache fits its budget,
// always keeping the most recent one.
func (c *objectCache) evict() {
	for c.used > c.budget && c.lru.Len() > 1 {
		el := c.lru.Back()
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		for _, k := range e.keys {
			delete(c.byKey, k)
		}
		c.used -= e.cost
		e.gone = true
		if e.refs == 0 {
			e.obj.Close()
		}
	}
}

func (c *objectCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.budget = 0
	for c.lru.Len() > 0 {
		el := c.lru.Back()
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		for _, k := range e.keys {
			delete(c.byKey, k)
		}
		e.gone = true
		if e.refs == 0 {
			e.obj.Close()
		}
	}
	c.used = 0
}

// stats returns the number of cached objects and their cost.
func (c *objectCache) stats() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.used
}

// giveBack drops the resident pages of every cached object's mappings.
func (c *objectCache) giveBack() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.lru.Front(); el != nil; el = el.Next() {
		el.Value.(*cacheEntry).obj.giveBack()
	}
}
