package unwind

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

func tableOfRows(n int) *Table {
	t := &Table{Arch: AMD64}
	t.Rows = make([]Row, 0, n)
	for i := range n {
		t.Rows = append(t.Rows, Row{PC: uint64(i), CFA: CFASP, CFAOffset: int32(8 * (i%2 + 1))})
	}
	return t
}

func TestCacheLRUAndBudget(t *testing.T) {
	per := tableOfRows(10).memSize() + failedEntrySize
	c := NewCache(3*per, 1)
	for i := range 3 {
		c.Add(fmt.Sprint(i), tableOfRows(10), nil)
	}
	if _, _, ok := c.Get("0"); !ok { // 0 becomes the most recently used
		t.Fatal("0 not cached")
	}
	c.Add("3", tableOfRows(10), nil) // evicts 1, the least recently used
	if _, _, ok := c.Get("1"); ok {
		t.Error("1 still cached after eviction")
	}
	for _, k := range []string{"0", "2", "3"} {
		if _, _, ok := c.Get(k); !ok {
			t.Errorf("%s evicted", k)
		}
	}
	st := c.Stats()
	if st.Bytes > st.Budget || st.Entries != 3 || st.Evictions != 1 {
		t.Errorf("stats %+v", st)
	}
	// A table bigger than the whole budget is not kept, and evicts nothing.
	c.Add("huge", tableOfRows(100), nil)
	if _, _, ok := c.Get("huge"); ok || c.Stats().Entries != 3 {
		t.Errorf("over-budget table cached: %+v", c.Stats())
	}
	// Replacing an entry keeps the accounting right.
	c.Add("0", tableOfRows(1), nil)
	if got, want := c.Stats().Bytes, 2*per+tableOfRows(1).memSize()+failedEntrySize; got != want {
		t.Errorf("bytes %d after replace, want %d", got, want)
	}
}

func TestCacheGetOrBuildOnce(t *testing.T) {
	c := NewCache(1<<20, 1)
	var builds atomic.Int32
	release := make(chan struct{})
	build := func() (*Table, error) {
		builds.Add(1)
		<-release
		return tableOfRows(5), nil
	}
	var wg sync.WaitGroup
	results := make([]*Table, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tab, err := c.GetOrBuild("id", build)
			if err != nil {
				t.Error(err)
			}
			results[i] = tab
		}()
	}
	// Get never waits for a build in flight.
	if _, _, ok := c.Get("id"); ok {
		t.Error("Get found a table still being built")
	}
	close(release)
	wg.Wait()
	if n := builds.Load(); n != 1 {
		t.Errorf("%d builds, want 1", n)
	}
	for _, r := range results[1:] {
		if r != results[0] {
			t.Fatal("callers got different tables")
		}
	}
	// Failures are cached: the binary is not parsed again.
	bad := errors.New("bad binary")
	for range 2 {
		if _, err := c.GetOrBuild("broken", func() (*Table, error) { builds.Add(1); return nil, bad }); !errors.Is(err, bad) {
			t.Errorf("err %v", err)
		}
	}
	if n := builds.Load(); n != 2 {
		t.Errorf("%d builds after a cached failure, want 2", n)
	}
	// A panicking build is an error, not a crash.
	if _, err := c.GetOrBuild("panics", func() (*Table, error) { panic("boom") }); err == nil {
		t.Error("panicking build returned no error")
	}
}

func TestCachePrefetch(t *testing.T) {
	c := NewCache(1<<20, 2)
	path := buildBinary(t, "chain-O2-omitfp")
	ready := make(chan *Table, 1)
	c.Prefetch("chain", func() (*Table, error) { return Open(path) }, func(tab *Table, err error) {
		if err != nil {
			t.Error(err)
		}
		ready <- tab
	})
	tab := <-ready
	if tab == nil || len(tab.Rows) == 0 {
		t.Fatal("no table")
	}
	if got, _, ok := c.Get("chain"); !ok || got != tab {
		t.Error("prefetched table not cached")
	}
	// Prefetching a cached table does not build it again.
	c.Prefetch("chain", func() (*Table, error) { t.Error("rebuilt"); return nil, nil }, func(got *Table, _ error) { ready <- got })
	if got := <-ready; got != tab {
		t.Error("second prefetch returned another table")
	}
}
