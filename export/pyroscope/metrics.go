package pyroscope

import (
	"errors"
	"maps"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a profile is dropped, the values of the reason label of
// ember_pyroscope_profiles_dropped_total.
const (
	DropQueueFull = "queue_full" // evicted, oldest first, to keep the byte budget
	DropTooOld    = "too_old"    // older than MaxAge: the server would reject it
	DropTooLarge  = "too_large"  // over the limits even without samples, or over the budget
	DropInvalid   = "invalid"    // bad labels or an unencodable profile
	DropRejected  = "rejected"   // the server answered with a final error (4xx but 408, 429)
	DropClosed    = "closed"     // enqueued after Close
	DropShutdown  = "shutdown"   // still queued when Close's context ended
)

// Stats is a snapshot of a Sink's counters.
type Stats struct {
	Enqueued        uint64            // profiles accepted by Enqueue
	Sent            uint64            // profiles the server accepted
	SentBytes       uint64            // encoded bytes of those
	Attempts        uint64            // upload attempts
	FailedAttempts  uint64            // attempts that failed, retried or not
	Dropped         map[string]uint64 // profiles lost, by reason
	TrimmedProfiles uint64            // profiles that lost samples to the limits
	TrimmedSamples  uint64            // samples lost to the limits
	QueueBytes      int64             // encoded bytes queued now (in flight included)
	QueueProfiles   int               // profiles queued now (in flight included)
}

// DroppedTotal returns the number of profiles dropped for any reason.
func (s Stats) DroppedTotal() uint64 {
	var n uint64
	for _, v := range s.Dropped {
		n += v
	}
	return n
}

// metrics keeps the counters twice: as Prometheus metrics for the outside
// and as plain numbers for Stats.
type metrics struct {
	enqueued, sent, sentBytes, attempts, trimmedProfiles, trimmedSamples prometheus.Counter

	failed      *prometheus.CounterVec // by code
	dropped     *prometheus.CounterVec // by reason
	queueBytes  prometheus.Gauge
	queueProfs  prometheus.Gauge
	budget      prometheus.Gauge
	uploadTimes prometheus.Histogram

	mu sync.Mutex
	s  Stats
}

func newMetrics(reg prometheus.Registerer, sub string, budget int64) (*metrics, error) {
	const ns = "ember"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		enqueued:        counter("profiles_enqueued_total", "Profiles accepted into the upload queue."),
		sent:            counter("profiles_sent_total", "Profiles the server accepted."),
		sentBytes:       counter("sent_bytes_total", "Encoded (gzipped pprof) bytes of the profiles the server accepted."),
		attempts:        counter("upload_attempts_total", "Upload attempts, retries included."),
		trimmedProfiles: counter("trimmed_profiles_total", "Profiles that lost their coldest samples to fit the server's limits."),
		trimmedSamples:  counter("trimmed_samples_total", "Samples dropped, coldest first, to fit the server's limits."),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "upload_failures_total", Help: "Failed upload attempts, by HTTP status code (or \"transport\")."}, []string{"code"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "profiles_dropped_total", Help: "Profiles not delivered, by reason."}, []string{"reason"}),
		queueBytes: gauge("queue_bytes", "Encoded bytes in the upload queue, uploads in flight included."),
		queueProfs: gauge("queue_profiles", "Profiles in the upload queue, uploads in flight included."),
		budget:     gauge("queue_budget_bytes", "The upload queue's byte budget."),
		uploadTimes: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "upload_duration_seconds", Help: "Duration of upload attempts.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 8)}),
		s: Stats{Dropped: make(map[string]uint64)},
	}
	m.budget.Set(float64(budget))
	// Show every reason from the start, so that rates work from zero.
	for _, r := range []string{DropQueueFull, DropTooOld, DropTooLarge, DropInvalid, DropRejected, DropClosed, DropShutdown} {
		m.dropped.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.enqueued, m.sent, m.sentBytes, m.attempts, m.trimmedProfiles,
		m.trimmedSamples, m.failed, m.dropped, m.queueBytes, m.queueProfs, m.budget, m.uploadTimes} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}

func (m *metrics) enqueue() {
	m.enqueued.Inc()
	m.mu.Lock()
	m.s.Enqueued++
	m.mu.Unlock()
}

func (m *metrics) trim(samples int) {
	if samples <= 0 {
		return
	}
	m.trimmedProfiles.Inc()
	m.trimmedSamples.Add(float64(samples))
	m.mu.Lock()
	m.s.TrimmedProfiles++
	m.s.TrimmedSamples += uint64(samples)
	m.mu.Unlock()
}

func (m *metrics) drop(reason string) {
	m.dropped.WithLabelValues(reason).Inc()
	m.mu.Lock()
	m.s.Dropped[reason]++
	m.mu.Unlock()
}

func (m *metrics) attempt(seconds float64) {
	m.attempts.Inc()
	m.uploadTimes.Observe(seconds)
	m.mu.Lock()
	m.s.Attempts++
	m.mu.Unlock()
}

func (m *metrics) fail(code string) {
	m.failed.WithLabelValues(code).Inc()
	m.mu.Lock()
	m.s.FailedAttempts++
	m.mu.Unlock()
}

func (m *metrics) send(bytes int) {
	m.sent.Inc()
	m.sentBytes.Add(float64(bytes))
	m.mu.Lock()
	m.s.Sent++
	m.s.SentBytes += uint64(bytes)
	m.mu.Unlock()
}

func (m *metrics) queue(bytes int64, profiles int) {
	m.queueBytes.Set(float64(bytes))
	m.queueProfs.Set(float64(profiles))
	m.mu.Lock()
	m.s.QueueBytes, m.s.QueueProfiles = bytes, profiles
	m.mu.Unlock()
}

func (m *metrics) stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.s
	s.Dropped = maps.Clone(m.s.Dropped)
	return s
}
