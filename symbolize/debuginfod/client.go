package debuginfod

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emberprof/ember/export/atomicfile"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for a zero Config field.
const (
	// DefaultTimeout bounds one request, headers and body. elfutils' client
	// waits 90 s for the first byte; a profiler gives up sooner, since the
	// binary only loses names until the next try.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxFileBytes caps one file. The largest debug files of a
	// distribution (a browser's, LLVM's) are a few GiB; those are left out
	// rather than let one answer fill the disk.
	DefaultMaxFileBytes = 1 << 30
	// DefaultCacheBytes is the cache's byte budget.
	DefaultCacheBytes = 4 << 30
	// DefaultMaxPending bounds the build IDs waiting to be fetched.
	DefaultMaxPending = 1024
	// DefaultWorkers is the number of fetches in flight at once.
	DefaultWorkers = 2
	// retryError is how long a build ID whose fetch failed for a passing
	// reason (a timeout, a 5xx) waits before it is asked for again.
	retryError = 5 * time.Minute
)

// Config configures a Client. Only URLs is required.
type Config struct {
	// URLs are the servers, tried in order for each build ID.
	URLs []string
	// CacheDir is the cache; "" means DefaultCacheDir().
	CacheDir string
	// Timeout bounds one request; 0 means $DEBUGINFOD_TIMEOUT seconds if
	// set, else DefaultTimeout.
	Timeout time.Duration
	// MaxFileBytes caps one file; 0 means $DEBUGINFOD_MAXSIZE if set,
	// else DefaultMaxFileBytes.
	MaxFileBytes int64
	// CacheBytes is the cache's byte budget; 0 means DefaultCacheBytes.
	CacheBytes int64
	// MaxPending bounds the queue of build IDs to fetch; beyond it requests
	// are dropped and counted. 0 means DefaultMaxPending.
	MaxPending int
	// Workers is the number of concurrent fetches; 0 means DefaultWorkers.
	Workers    int
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// HTTPClient is the transport; nil means a new http.Client.
	HTTPClient *http.Client
}

// ParseURLs splits a DEBUGINFOD_URLS value: URLs separated by spaces, with
// trailing slashes removed.
func ParseURLs(s string) []string {
	var urls []string
	for _, u := range strings.Fields(s) {
		urls = append(urls, strings.TrimRight(u, "/"))
	}
	return urls
}

// URLsFromEnv returns the servers in $DEBUGINFOD_URLS.
func URLsFromEnv() []string { return ParseURLs(os.Getenv("DEBUGINFOD_URLS")) }

// Client fetches debug files in the background and answers from its cache.
// It is safe for concurrent use.
type Client struct {
	cfg   Config
	cache cache
	m     *metrics
	now   func() time.Time

	mu      sync.Mutex
	state   map[key]*entry
	queue   []key
	busy    int           // fetches in flight
	changed chan struct{} // closed and replaced when the queue or busy changes
	closed  bool
	wg      sync.WaitGroup
	stop    context.CancelFunc
	ctx     context.Context
}

type key struct {
	id   string
	kind Kind
}

// entry is what the client knows of a key: queued or in flight (pending),
// in the cache (path), or not to be asked for before retry.
type entry struct {
	pending bool
	path    string
	retry   time.Time
}

// New returns a Client with its workers started. Close stops them.
func New(cfg Config) (*Client, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("debuginfod: no server URLs")
	}
	for _, u := range cfg.URLs {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil, fmt.Errorf("debuginfod: server URL %q: want http:// or https://", u)
		}
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = DefaultCacheDir()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = envSeconds("DEBUGINFOD_TIMEOUT", DefaultTimeout)
	}
	if cfg.MaxFileBytes <= 0 {
		cfg.MaxFileBytes = DefaultMaxFileBytes
		if n, err := strconv.ParseInt(os.Getenv("DEBUGINFOD_MAXSIZE"), 10, 64); err == nil && n > 0 {
			cfg.MaxFileBytes = n
		}
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("debuginfod: cache: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("debuginfod: registering metrics: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	c := &Client{cfg: cfg, cache: cache{cfg.CacheDir}, m: m, now: time.Now,
		state: make(map[key]*entry), changed: make(chan struct{}), ctx: ctx, stop: stop}
	for range cfg.Workers {
		c.wg.Add(1)
		go c.worker()
	}
	return c, nil
}

func envSeconds(name string, def time.Duration) time.Duration {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return def
}

// CacheDir returns the cache directory in use.
func (c *Client) CacheDir() string { return c.cfg.CacheDir }

// Stats returns a snapshot of the client's counters.
func (c *Client) Stats() Stats { return c.m.stats() }

// Cached returns the path of the cached file of kind k for build ID id, or ""
// if there is none yet. It never touches the network.
func (c *Client) Cached(id string, k Kind) string {
	if !ValidBuildID(id) {
		return ""
	}
	kk := key{id, k}
	c.mu.Lock()
	e := c.state[kk]
	c.mu.Unlock()
	switch {
	case e != nil && e.path != "":
		if _, err := os.Stat(e.path); err == nil {
			return e.path
		}
		c.mu.Lock()
		delete(c.state, kk) // evicted, by us or another client
		c.mu.Unlock()
		return ""
	case e != nil:
		return "" // pending, or failed recently
	}
	p, neg := c.cache.lookup(id, k, c.now())
	switch {
	case p != "":
		c.m.hit()
		c.mu.Lock()
		c.state[kk] = &entry{path: p}
		c.mu.Unlock()
		return p
	case neg:
		c.mu.Lock()
		c.state[kk] = &entry{retry: c.now().Add(c.cache.cacheMiss())}
		c.mu.Unlock()
	}
	return ""
}

// Request queues a fetch of kind k for build ID id, unless it is cached,
// queued, or failed recently. It never waits.
func (c *Client) Request(id string, k Kind) {
	if !ValidBuildID(id) || c.Cached(id, k) != "" {
		return
	}
	kk := key{id, k}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if e := c.state[kk]; e != nil && (e.pending || e.path != "" || c.now().Before(e.retry)) {
		return
	}
	if len(c.queue) >= c.cfg.MaxPending {
		c.m.fetch(k, ResultDropped, 0)
		return
	}
	c.state[kk] = &entry{pending: true}
	c.queue = append(c.queue, kk)
	c.changedLocked()
}

func (c *Client) changedLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Pending returns the number of fetches queued or in flight.
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue) + c.busy
}

// Wait waits until no fetch is queued or in flight, or ctx is done, and
// returns the number still pending.
func (c *Client) Wait(ctx context.Context) int {
	for {
		c.mu.Lock()
		n, ch := len(c.queue)+c.busy, c.changed
		c.mu.Unlock()
		if n == 0 {
			return 0
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return n
		}
	}
}

// Close cancels the fetches in flight (their partial files are removed) and
// stops the workers.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.queue = nil
	c.changedLocked()
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
	return nil
}

func (c *Client) worker() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		for len(c.queue) == 0 && !c.closed {
			ch := c.changed
			c.mu.Unlock()
			<-ch
			c.mu.Lock()
		}
		if c.closed {
			c.mu.Unlock()
			return
		}
		kk := c.queue[0]
		c.queue = c.queue[1:]
		c.busy++
		c.mu.Unlock()

		path, retry := c.fetch(kk)

		c.mu.Lock()
		c.busy--
		c.state[kk] = &entry{path: path, retry: retry}
		c.changedLocked()
		c.mu.Unlock()
	}
}

// fetch asks each server in turn for kk and returns the cached file's path,
// or the time before which kk is not asked for again.
func (c *Client) fetch(kk key) (string, time.Time) {
	var errs []error
	result := ResultNotFound
	for _, u := range c.cfg.URLs {
		start := time.Now()
		path, n, err := c.get(u, kk)
		if err == nil {
			c.m.fetch(kk.kind, ResultFetched, n)
			c.cfg.Logger.Debug("debuginfod: fetched", "build_id", kk.id, "kind", kk.kind, "server", u,
				"bytes", n, "duration", time.Since(start).Round(time.Millisecond), "path", path)
			left, evicted := c.cache.trim(c.cfg.CacheBytes, path)
			c.m.cache(left, evicted)
			return path, time.Time{}
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
		switch {
		case errors.Is(err, errNotFound):
		case errors.Is(err, errTooLarge):
			result = worse(result, ResultTooLarge)
		case errors.Is(err, ErrInvalid):
			result = worse(result, ResultInvalid)
		default:
			result = worse(result, ResultError)
		}
	}
	c.m.fetch(kk.kind, result, 0)
	err := errors.Join(errs...)
	if c.ctx.Err() != nil {
		return "", time.Time{} // closing: nothing learnt
	}
	if result == ResultError {
		c.cfg.Logger.Debug("debuginfod: fetch failed, will retry later", "build_id", kk.id, "kind", kk.kind, "err", err)
		return "", c.now().Add(retryError)
	}
	c.cfg.Logger.Debug("debuginfod: not available", "build_id", kk.id, "kind", kk.kind, "result", result, "err", err)
	if werr := c.cache.writeNegative(kk.id, kk.kind); werr != nil {
		c.cfg.Logger.Debug("debuginfod: negative cache entry", "build_id", kk.id, "err", werr)
	}
	return "", c.now().Add(c.cache.cacheMiss())
}

// worse returns the result that says more: a passing error is retried
// sooner than a bad answer, which is retried sooner than a 404.
func worse(a, b string) string {
	rank := map[string]int{ResultNotFound: 0, ResultInvalid: 1, ResultTooLarge: 1, ResultError: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

var (
	errNotFound = errors.New("not found")
	errTooLarge = errors.New("larger than the size cap")
)

// get fetches kk from one server into the cache, checked, and returns its
// path and size.
func (c *Client) get(server string, kk key) (string, int64, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.Timeout)
	defer cancel()
	url := server + "/buildid/" + kk.id + "/" + string(kk.kind)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("User-Agent", "ember-debuginfod")
	c.m.request()
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return "", 0, errNotFound
	case resp.StatusCode != http.StatusOK:
		return "", 0, fmt.Errorf("HTTP %s", resp.Status)
	case resp.ContentLength > c.cfg.MaxFileBytes:
		return "", 0, fmt.Errorf("%w: %d bytes, cap %d", errTooLarge, resp.ContentLength, c.cfg.MaxFileBytes)
	}
	dir := filepath.Join(c.cfg.CacheDir, kk.id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, err
	}
	tmp, n, err := atomicfile.WriteTemp(dir, ".ember-"+string(kk.kind)+"-*", 0o644, func(w io.Writer) error {
		n, err := io.Copy(w, io.LimitReader(resp.Body, c.cfg.MaxFileBytes+1))
		switch {
		case n > c.cfg.MaxFileBytes:
			return fmt.Errorf("%w: more than %d bytes", errTooLarge, c.cfg.MaxFileBytes)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("%w: cut short after %d bytes", ErrInvalid, n)
		case err != nil:
			return err // a timeout or a reset: passing
		case resp.ContentLength >= 0 && n != resp.ContentLength:
			return fmt.Errorf("%w: %d of %d bytes", ErrInvalid, n, resp.ContentLength)
		}
		return nil
	})
	if err != nil {
		return "", 0, err
	}
	if err := checkBuildID(tmp, kk.id); err != nil {
		os.Remove(tmp)
		return "", 0, err
	}
	path := c.cache.path(kk.id, kk.kind)
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", 0, err
	}
	return path, n, nil
}

// checkBuildID reports whether the file at path is ELF with build ID id: a
// truncated or foreign answer never takes the name of the file asked for.
func checkBuildID(path, id string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	got, err := BuildID(f)
	if err != nil {
		return err
	}
	if got != id {
		return fmt.Errorf("%w: build ID %s", ErrInvalid, got)
	}
	return nil
}
