package filesink

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats is a snapshot of a Sink's counters.
type Stats struct {
	Written      uint64            // files written
	WrittenBytes uint64            // bytes written
	Failed       uint64            // profiles that could not be written
	Removed      map[string]uint64 // files removed, by reason: "age", "size"
	DirBytes     int64             // total size of the sink's files now
	DirFiles     int               // number of the sink's files now
}

type metrics struct {
	written, writtenBytes, failures prometheus.Counter
	removedVec                      *prometheus.CounterVec
	dirBytes, dirFiles              prometheus.Gauge

	mu sync.Mutex
	s  Stats
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "ember", "filesink"
	m := &metrics{
		written: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "files_written_total", Help: "Profile files written."}),
		writtenBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "written_bytes_total", Help: "Bytes of profile files written."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "write_failures_total", Help: "Profiles that could not be written."}),
		removedVec: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "files_removed_total", Help: "Profile files removed by rotation, by reason (age, size)."}, []string{"reason"}),
		dirBytes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "dir_bytes", Help: "Total size of the profile files in the directory."}),
		dirFiles: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "dir_files", Help: "Number of profile files in the directory."}),
		s: Stats{Removed: map[string]uint64{}},
	}
	m.removedVec.WithLabelValues("age")
	m.removedVec.WithLabelValues("size")
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.written, m.writtenBytes, m.failures, m.removedVec, m.dirBytes, m.dirFiles} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}

// wrote counts a file written.
func (m *metrics) wrote(size int64) {
	m.written.Inc()
	m.writtenBytes.Add(float64(size))
	m.mu.Lock()
	m.s.Written++
	m.s.WrittenBytes += uint64(size)
	m.mu.Unlock()
}

func (m *metrics) failed() {
	m.failures.Inc()
	m.mu.Lock()
	m.s.Failed++
	m.mu.Unlock()
}

func (m *metrics) removed(reason string) {
	m.removedVec.WithLabelValues(reason).Inc()
	m.mu.Lock()
	m.s.Removed[reason]++
	m.mu.Unlock()
}

func (m *metrics) dir(bytes int64, files int) {
	m.dirBytes.Set(float64(bytes))
	m.dirFiles.Set(float64(files))
	m.mu.Lock()
	m.s.DirBytes, m.s.DirFiles = bytes, files
	m.mu.Unlock()
}

func (m *metrics) stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.s
	s.Removed = make(map[string]uint64, len(m.s.Removed))
	for k, v := range m.s.Removed {
		s.Removed[k] = v
	}
	return s
}
