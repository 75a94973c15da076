package pyroscope

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/emberprof/ember/export/sink"
)

// Sink uploads profiles to a Pyroscope server from a bounded queue.
type Sink struct {
	cfg    Config
	client pushv1connect.PusherServiceClient
	tr     *Transport // nil: the push API
	m      *metrics

	mu       sync.Mutex
	items    []*item       // oldest first; in-flight items stay until they finish
	bytes    int64         // sum of len(data) over items
	changed  chan struct{} // closed and replaced whenever the state changes
	closing  bool          // Close was called: Enqueue refuses
	stopped  bool          // workers must exit
	failures int           // consecutive failed rounds of attempts
	round    int           // changes when failures does, and at Close
	retryAt  time.Time     // no attempt starts before this
	probing  bool          // while failing, one single-profile attempt (a probe) is in flight
	lastLog  time.Time     // of the last "dropping" warning
	done     chan struct{} // closed when Close has finished
	wg       sync.WaitGroup
}

var _ sink.Sink = (*Sink)(nil)

// item is one queued profile.
type item struct {
	id            string
	labels        []*typesv1.LabelPair
	data          []byte // gzipped pprof
	stamp         time.Time
	service, name string
	inflight      bool
	gone          bool // removed from the queue (evicted, shut down) while in flight
	solo          bool // refused in a batch: sent alone, so that only a profile the server refuses is dropped
	cancel        context.CancelFunc
}

// New returns a Sink that sends to cfg.URL, with its workers started.
func New(cfg Config) (*Sink, error) { return newQueued(cfg, nil) }

func newQueued(cfg Config, tr *Transport) (*Sink, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	sub := "pyroscope"
	if tr != nil {
		sub = tr.Subsystem
	}
	m, err := newMetrics(cfg.Registerer, sub, cfg.QueueBytes)
	if err != nil {
		return nil, fmt.Errorf("pyroscope: registering metrics: %w", err)
	}
	s := &Sink{
		cfg:     cfg,
		tr:      tr,
		m:       m,
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	d := &doer{client: cfg.HTTPClient, auth: &s.cfg.Auth, now: cfg.now}
	s.client = pushv1connect.NewPusherServiceClient(d, cfg.URL)
	for range cfg.Concurrency {
		s.wg.Add(1)
		go s.worker()
	}
	return s, nil
}

// Stats returns a snapshot of the sink's counters.
func (s *Sink) Stats() Stats { return s.m.stats() }

// Enqueue trims and encodes p and queues it for upload. It never waits for
// the network. It returns ErrInvalid, ErrTooLarge, ErrTooOld or ErrClosed
// (wrapped) for a profile it refuses, and counts it.
func (s *Sink) Enqueue(p sink.Profile) error {
	if s.isClosing() {
		s.m.drop(DropClosed)
		return ErrClosed
	}
	it, err := s.prepare(&p)
	if err != nil {
		switch {
		case errors.Is(err, ErrTooLarge):
			s.m.drop(DropTooLarge)
		case errors.Is(err, ErrTooOld):
			s.m.drop(DropTooOld)
		default:
			s.m.drop(DropInvalid)
		}
		s.cfg.Logger.Warn("pyroscope: profile refused", "service", p.Service, "name", p.Name, "err", err)
		return err
	}
	return s.push(it)
}

// prepare checks p and encodes it into a queue item.
func (s *Sink) prepare(p *sink.Profile) (*item, error) {
	if p.Profile == nil {
		return nil, fmt.Errorf("%w: no profile data", ErrInvalid)
	}
	labels, err := seriesLabels(p.Name, p.Service, s.cfg.Labels, p.Labels)
	if err != nil {
		return nil, err
	}
	now := s.cfg.now()
	prof := p.Profile
	if prof.TimeNanos == 0 {
		// The server files a profile at its TimeNanos; keep it fixed across
		// retries instead of letting the server use its arrival time.
		cp := sink.ShallowCopy(prof)
		cp.TimeNanos = p.EndTime(now).UnixNano() - cp.DurationNanos
		prof = cp
	}
	stamp := time.Unix(0, prof.TimeNanos)
	if age := now.Sub(stamp); age > s.cfg.MaxAge {
		return nil, fmt.Errorf("%w: %v old, the limit is %v", ErrTooOld, age.Round(time.Second), s.cfg.MaxAge)
	}
	enc, err := fit(prof, s.cfg.MaxSamples, s.cfg.MaxProfileBytes, s.cfg.DropSampleLabels)
	if err != nil {
		return nil, err
	}
	if enc.trimmed > 0 {
		s.cfg.Logger.Debug("pyroscope: coldest samples trimmed to fit the server's limits",
			"service", p.Service, "name", p.Name, "trimmed", enc.trimmed, "kept", enc.samples)
	}
	s.m.trim(enc.trimmed)
	if s.tr != nil {
		if enc.data, err = s.tr.Encode(p, enc.prof); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return &item{
		id:      newID(),
		labels:  labels,
		data:    enc.data,
		stamp:   stamp,
		service: p.Service,
		name:    p.Name,
	}, nil
}

// push adds it to the queue, evicting the oldest items to stay in budget.
func (s *Sink) push(it *item) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		s.m.drop(DropClosed)
		return ErrClosed
	}
	size := int64(len(it.data))
	if size > s.cfg.QueueBytes {
		s.m.drop(DropTooLarge)
		return fmt.Errorf("%w: %d bytes encoded, the queue budget is %d", ErrTooLarge, size, s.cfg.QueueBytes)
	}
	evicted := 0
	for s.bytes+size > s.cfg.QueueBytes && len(s.items) > 0 {
		s.removeLocked(s.items[0])
		s.m.drop(DropQueueFull)
		evicted++
	}
	if evicted > 0 {
		s.warnDropLocked("queue budget full, oldest profiles dropped", evicted)
	}
	s.items = append(s.items, it)
	s.bytes += size
	s.m.enqueue()
	s.changedLocked()
	return nil
}

// removeLocked takes it out of the queue, cancelling its upload if one is
// in flight.
func (s *Sink) removeLocked(it *item) {
	for i, x := range s.items {
		if x == it {
			s.items = slices.Delete(s.items, i, i+1) // clears the tail for the GC
			s.bytes -= int64(len(it.data))
			break
		}
	}
	it.gone = true
	if it.inflight && it.cancel != nil {
		it.cancel()
	}
}

// changedLocked wakes everyone waiting for a change of state.
func (s *Sink) changedLocked() {
	s.m.queue(s.bytes, len(s.items))
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Sink) warnDropLocked(msg string, n int) {
	now := time.Now()
	if now.Sub(s.lastLog) < 30*time.Second {
		return
	}
	s.lastLog = now
	s.cfg.Logger.Warn("pyroscope: "+msg, "profiles", n, "dropped_total", s.m.stats().DroppedTotal())
}

func (s *Sink) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Flush waits until every queued profile is delivered or dropped, or ctx is
// done.
func (s *Sink) Flush(ctx context.Context) error {
	if n, b := s.waitEmpty(ctx); n > 0 {
		return fmt.Errorf("pyroscope: flush: %d profiles (%d bytes) still queued: %w", n, b, context.Cause(ctx))
	}
	return nil
}

// Close refuses new profiles, delivers the queued ones until ctx is done
// (trying at once even if it was backing off), then drops and counts what
// is left, waits for its workers and returns an error that says how much
// was lost. Closing twice returns nil.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		select {
		case <-s.done:
		case <-ctx.Done():
		}
		return nil
	}
	s.closing = true
	s.failures, s.retryAt = 0, time.Time{}
	s.round++
	s.changedLocked()
	s.mu.Unlock()

	s.waitEmpty(ctx)

	s.mu.Lock()
	n, b := len(s.items), s.bytes
	what := undelivered(s.items)
	for len(s.items) > 0 {
		s.removeLocked(s.items[0])
		s.m.drop(DropShutdown)
	}
	s.stopped = true
	s.changedLocked()
	s.mu.Unlock()
	s.wg.Wait()
	s.cfg.HTTPClient.CloseIdleConnections()
	if s.tr != nil && s.tr.Close != nil {
		if err := s.tr.Close(); err != nil {
			s.cfg.Logger.Warn("pyroscope: closing the transport", "err", err)
		}
	}
	close(s.done)
	if n > 0 {
		return fmt.Errorf("%s: %d profiles (%d bytes) not delivered (%s): %w", s.name(), n, b, what, context.Cause(ctx))
	}
	return nil
}

// name is the sink's name in messages: pyroscope, or the transport's.
func (s *Sink) name() string {
	if s.tr != nil {
		return s.tr.Subsystem
	}
	return "pyroscope"
}

// undelivered says which profiles items are: per kind and service, how many,
// and the span of their times.
func undelivered(items []*item) string {
	type key struct{ name, service string }
	count := map[key]int{}
	var first, last time.Time
	for _, it := range items {
		count[key{it.name, it.service}]++
		if first.IsZero() || it.stamp.Before(first) {
			first = it.stamp
		}
		if it.stamp.After(last) {
			last = it.stamp
		}
	}
	keys := slices.SortedFunc(maps.Keys(count), func(a, b key) int {
		return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.service, b.service))
	})
	parts := make([]string, 0, len(keys)+1)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %s x%d", k.name, k.service, count[k]))
	}
	parts = append(parts, fmt.Sprintf("from %s to %s", first.UTC().Format(time.TimeOnly), last.UTC().Format(time.TimeOnly)))
	return strings.Join(parts, ", ")
}

// waitEmpty waits until the queue is empty or ctx is done, and returns
// what is left.
func (s *Sink) waitEmpty(ctx context.Context) (int, int64) {
	for {
		s.mu.Lock()
		n, b, ch := len(s.items), s.bytes, s.changed
		s.mu.Unlock()
		if n == 0 {
			return 0, 0
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return n, b
		}
	}
}

// newID returns a random (version 4) UUID: the profile's ID, kept across
// retries.
func newID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// doer is the HTTP client under connect: it adds the credentials and tells
// the attempt what the server answered (connect's errors carry a code, not
// the HTTP status, and a proxy's 503 or 429 must be told apart from a 400).
type doer struct {
	client *http.Client
	auth   *Auth
	now    func() time.Time
}

type responseKey struct{}

type response struct {
	status     int
	retryAfter time.Duration
}

func (d *doer) Do(req *http.Request) (*http.Response, error) {
	d.auth.apply(req.Header)
	resp, err := d.client.Do(req)
	if rec, ok := req.Context().Value(responseKey{}).(*response); ok && resp != nil {
		rec.status = resp.StatusCode
		rec.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), d.now())
	}
	return resp, err
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
