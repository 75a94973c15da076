package debuginfod

import (
	"errors"
	"maps"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a fetch, the values of the result label of
// ember_debuginfod_fetches_total.
const (
	ResultFetched  = "fetched"   // a valid file, now in the cache
	ResultNotFound = "not_found" // every server said 404: a negative entry
	ResultInvalid  = "invalid"   // not ELF, wrong build ID, or cut short: a negative entry
	ResultTooLarge = "too_large" // over the size cap: a negative entry
	ResultError    = "error"     // timeouts, transport errors, 5xx: retried after a while
	ResultDropped  = "dropped"   // not fetched: too many requests pending
)

// Stats is a snapshot of a Client's counters.
type Stats struct {
	Fetches      map[string]uint64 // by result
	FetchedBytes uint64            // bytes of the files kept
	CacheHits    uint64            // Cached answers that found a file
	Evicted      uint64            // files removed to keep the cache's budget
	CacheBytes   int64             // bytes in the cache after the last fetch
	Requests     uint64            // HTTP requests made, every server and retry
}

type metrics struct {
	fetches              *prometheus.CounterVec
	bytes, hits, evicted prometheus.Counter
	requests             prometheus.Counter
	cacheBytes           prometheus.Gauge
	mu                   sync.Mutex
	s                    Stats
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "ember", "debuginfod"
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "fetches_total",
			Help: "Build IDs fetched, by kind (debuginfo, executable) and result."}, []string{"kind", "result"}),
		bytes:    counter("fetched_bytes_total", "Bytes of the debug files and executables fetched and kept."),
		hits:     counter("cache_hits_total", "Lookups answered by a file already in the cache."),
		evicted:  counter("evicted_files_total", "Cached files removed, least recently used first, to keep the byte budget."),
		requests: counter("http_requests_total", "HTTP requests made to debuginfod servers."),
		cacheBytes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "cache_bytes",
			Help: "Bytes of debuginfo and executable files in the cache, after the last fetch."}),
		s: Stats{Fetches: make(map[string]uint64)},
	}
	for _, k := range []Kind{Debuginfo, Executable} {
		for _, r := range []string{ResultFetched, ResultNotFound, ResultInvalid, ResultTooLarge, ResultError, ResultDropped} {
			m.fetches.WithLabelValues(string(k), r)
		}
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.fetches, m.bytes, m.hits, m.evicted, m.requests, m.cacheBytes} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}

func (m *metrics) fetch(k Kind, result string, bytes int64) {
	m.fetches.WithLabelValues(string(k), result).Inc()
	m.bytes.Add(float64(bytes))
	m.mu.Lock()
	m.s.Fetches[result]++
	m.s.FetchedBytes += uint64(bytes)
	m.mu.Unlock()
}

func (m *metrics) hit() {
	m.hits.Inc()
	m.mu.Lock()
	m.s.CacheHits++
	m.mu.Unlock()
}

func (m *metrics) request() {
	m.requests.Inc()
	m.mu.Lock()
	m.s.Requests++
	m.mu.Unlock()
}

func (m *metrics) cache(bytes int64, evicted int) {
	m.cacheBytes.Set(float64(bytes))
	m.evicted.Add(float64(evicted))
	m.mu.Lock()
	m.s.CacheBytes = bytes
	m.s.Evicted += uint64(evicted)
	m.mu.Unlock()
}

func (m *metrics) stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.s
	s.Fetches = maps.Clone(m.s.Fetches)
	return s
}
