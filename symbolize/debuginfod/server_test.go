package debuginfod_test

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/symbolize"
	"github.com/emberprof/ember/symbolize/debuginfod"
)

// waitFetches gives the client's background fetches a bound that no healthy
// fetch on 127.0.0.1 comes near, and fails if they are still pending.
func waitFetches(t *testing.T, c *debuginfod.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if n := c.Wait(ctx); n != 0 {
		t.Fatalf("%d fetches still pending after 60 s", n)
	}
}

func newClient(t *testing.T, cfg debuginfod.Config) *debuginfod.Client {
	t.Helper()
	c, err := debuginfod.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRealServer runs Debian's debuginfod over a directory holding only the
// debug file of a stripped binary built here: the binary's frames get their
// names and lines only through the server, the file lands in the standard
// cache layout (elfutils' own debuginfod-find answers from it), and a second
// run, with a new client over the same cache, makes no request.
func TestRealServer(t *testing.T) {
	work, srv := t.TempDir(), t.TempDir()
	a := buildBinary(t, work, "leafa", 1)
	copyFile(t, a.debug, filepath.Join(srv, "leafa.debug"))
	s := startDebuginfod(t, srv)
	cacheDir := t.TempDir()

	// Without debuginfod, ember_leaf (a static function) has no name.
	plain := symbolize.New(symbolize.Options{DebugDirs: []string{}})
	defer plain.Close()
	p := profileOf(a)
	_ = plain.Symbolize(p)
	if name, _ := leafFrame(p, 0); name == "ember_leaf" {
		t.Fatalf("the stripped binary resolves ember_leaf without its debug file: the test proves nothing")
	}

	c := newClient(t, debuginfod.Config{URLs: []string{s.url}, CacheDir: cacheDir})
	sym := symbolize.New(symbolize.Options{DebugDirs: []string{}, DebugSource: c})
	defer sym.Close()
	p = profileOf(a)
	_ = sym.Symbolize(p)
	if name, _ := leafFrame(p, 0); name == "ember_leaf" {
		t.Fatalf("first profile named ember_leaf: symbolizing waited for the network")
	}
	waitFetches(t, c)
	p = profileOf(a)
	if err := sym.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	if name, line := leafFrame(p, 0); name != "ember_leaf" || line != a.leafLine {
		t.Fatalf("after the fetch: %s:%d, want ember_leaf:%d", name, line, a.leafLine)
	}
	if st := c.Stats(); st.Fetches[debuginfod.ResultFetched] != 1 || st.FetchedBytes == 0 {
		t.Fatalf("stats %+v, want one debuginfo fetched", st)
	}

	// The standard layout: CACHE/BUILDID/debuginfo, the debug file itself.
	cached := filepath.Join(cacheDir, a.buildID, "debuginfo")
	f, err := os.Open(cached)
	if err != nil {
		t.Fatalf("cache layout: %v", err)
	}
	id, err := debuginfod.BuildID(f)
	f.Close()
	if err != nil || id != a.buildID {
		t.Fatalf("%s: build ID %s (%v), want %s", cached, id, err, a.buildID)
	}
	if ef, err := elf.Open(cached); err != nil || ef.Section(".debug_info") == nil {
		t.Fatalf("%s: not the debug file (%v)", cached, err)
	}
	// elfutils' client (what gdb and perf link) finds it there with its
	// server unreachable.
	find := testutil.RequireTool(t, "debuginfod-find")
	cmd := exec.Command(find, "debuginfo", a.buildID)
	cmd.Env = append(os.Environ(), "DEBUGINFOD_CACHE_PATH="+cacheDir, "DEBUGINFOD_URLS=http://127.0.0.1:1")
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != cached {
		t.Fatalf("debuginfod-find: %v: %q, want %s", err, out, cached)
	}

	// A second run: a new client and symbolizer over the same cache name
	// the frame at once, and the server sees no request.
	before := s.buildIDRequests(t)
	c2 := newClient(t, debuginfod.Config{URLs: []string{s.url}, CacheDir: cacheDir})
	sym2 := symbolize.New(symbolize.Options{DebugDirs: []string{}, DebugSource: c2})
	defer sym2.Close()
	p = profileOf(a)
	if err := sym2.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	if name, line := leafFrame(p, 0); name != "ember_leaf" || line != a.leafLine {
		t.Fatalf("second run: %s:%d, want ember_leaf:%d from the cache", name, line, a.leafLine)
	}
	waitFetches(t, c2)
	if after := s.buildIDRequests(t); after != before || c2.Stats().Requests != 0 {
		t.Fatalf("second run made requests: server %v -> %v, client %d", before, after, c2.Stats().Requests)
	}
	if c2.Stats().CacheHits == 0 {
		t.Fatalf("second run: no cache hit counted")
	}
}

// TestRealServerExecutable: the binary itself is unreadable (the process and
// its file are gone) but its mapping has a build ID: the executable and then
// its debug file come from the server, as `record` asks for them (Prefetch,
// then a bounded wait, twice).
func TestRealServerExecutable(t *testing.T) {
	work, srv := t.TempDir(), t.TempDir()
	a := buildBinary(t, work, "leafx", 3)
	copyFile(t, a.debug, filepath.Join(srv, "leafx.debug"))
	copyFile(t, a.stripped, filepath.Join(srv, "leafx"))
	s := startDebuginfod(t, srv)
	c := newClient(t, debuginfod.Config{URLs: []string{s.url}, CacheDir: t.TempDir()})
	sym := symbolize.New(symbolize.Options{DebugDirs: []string{}, DebugSource: c})
	defer sym.Close()

	gone := a
	gone.stripped = filepath.Join(work, "deleted-since")
	p := profileOf(gone)
	p.Mapping[0].BuildID = a.buildID
	for range 2 {
		sym.Prefetch(p)
		waitFetches(t, c)
	}
	if err := sym.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	if name, line := leafFrame(p, 0); name != "ember_leaf" || line != a.leafLine {
		t.Fatalf("%s:%d, want ember_leaf:%d", name, line, a.leafLine)
	}
	if n := c.Stats().Fetches[debuginfod.ResultFetched]; n != 2 {
		t.Fatalf("%d files fetched, want 2 (executable, debuginfo)", n)
	}
}

// TestNegativeCache: a build ID no server has gets elfutils' negative entry
// (an empty file of mode 000), and a second client does not ask again.
func TestNegativeCache(t *testing.T) {
	work, srv := t.TempDir(), t.TempDir()
	a := buildBinary(t, work, "leafn", 4)
	b := buildBinary(t, work, "leafm", 5)
	copyFile(t, b.debug, filepath.Join(srv, "leafm.debug")) // the server has another file only
	s := startDebuginfod(t, srv)
	cacheDir := t.TempDir()
	c := newClient(t, debuginfod.Config{URLs: []string{s.url}, CacheDir: cacheDir})
	c.Request(a.buildID, debuginfod.Debuginfo)
	waitFetches(t, c)
	st, err := os.Stat(filepath.Join(cacheDir, a.buildID, "debuginfo"))
	if err != nil || st.Size() != 0 || st.Mode().Perm() != 0 {
		t.Fatalf("negative entry: %v %v, want an empty file of mode 000", st, err)
	}
	if n := c.Stats().Fetches[debuginfod.ResultNotFound]; n != 1 {
		t.Fatalf("not_found = %d, want 1", n)
	}
	c2 := newClient(t, debuginfod.Config{URLs: []string{s.url}, CacheDir: cacheDir})
	c2.Request(a.buildID, debuginfod.Debuginfo)
	waitFetches(t, c2)
	if c2.Stats().Requests != 0 {
		t.Fatalf("a negative entry was asked for again")
	}
}

// TestCacheBudget: with a budget that holds one debug file, fetching a second
// removes the first, least recently used.
func TestCacheBudget(t *testing.T) {
	work, srv := t.TempDir(), t.TempDir()
	a := buildBinary(t, work, "leafa", 6)
	b := buildBinary(t, work, "leafb", 7)
	copyFile(t, a.debug, filepath.Join(srv, "leafa.debug"))
	copyFile(t, b.debug, filepath.Join(srv, "leafb.debug"))
	s := startDebuginfod(t, srv)
	st, err := os.Stat(a.debug)
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	c := newClient(t, debuginfod.Config{URLs: []string{s.url}, CacheDir: cacheDir, CacheBytes: st.Size() + st.Size()/2, Workers: 1})
	c.Request(a.buildID, debuginfod.Debuginfo)
	waitFetches(t, c)
	c.Request(b.buildID, debuginfod.Debuginfo)
	waitFetches(t, c)
	if _, err := os.Stat(filepath.Join(cacheDir, a.buildID, "debuginfo")); err == nil {
		t.Fatalf("the first file is still cached beyond the budget")
	}
	if _, err := os.Stat(filepath.Join(cacheDir, b.buildID, "debuginfo")); err != nil {
		t.Fatalf("the file just fetched was removed: %v", err)
	}
	if got := c.Stats(); got.Evicted != 1 || got.CacheBytes > st.Size()+st.Size()/2 {
		t.Fatalf("stats %+v, want one eviction and the cache within budget", got)
	}
}
