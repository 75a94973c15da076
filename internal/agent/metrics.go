package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics exposes the agent's own state on scrape: the kernel-side counters
// (samples, every kind of lost stack, collisions), what the tracer recovered
// from, and the symbolizer cache.
// The sinks register their own counters (sent, failed, dropped, queue bytes).
type metrics struct {
	a          *Agent
	kernel     *prometheus.Desc
	cacheBytes *prometheus.Desc
	cacheObjs  *prometheus.Desc
	mapBytes   *prometheus.Desc
	dropped    *prometheus.Desc
	late       *prometheus.Desc
	limit      *prometheus.Desc
	recovered  *prometheus.Desc
}

func newMetrics(a *Agent) *metrics {
	return &metrics{
		a: a,
		kernel: prometheus.NewDesc("ember_kernel_events_total",
			"Kernel-side counters of Ember's BPF programs: samples, off-CPU blocks, and every way a stack or sample was lost (collisions, faults, full maps).",
			[]string{"counter"}, nil),
		cacheBytes: prometheus.NewDesc("ember_symbolizer_cache_bytes", "Estimated bytes held by the symbolizer's object cache.", nil, nil),
		cacheObjs:  prometheus.NewDesc("ember_symbolizer_cache_objects", "Object files held by the symbolizer's cache.", nil, nil),
		mapBytes: prometheus.NewDesc("ember_bpf_map_memory_bytes",
			"Kernel memory held by each of Ember's BPF maps (the kernel's memlock accounting of the map).",
			[]string{"map"}, nil),
		dropped: prometheus.NewDesc("ember_intervals_dropped_total",
			"Whole intervals of samples shed because a later stage was behind: collect (a drain's samples did not fit in the queue to the loop that adds them to the interval), symbolize (the symbolizer was busy when the interval ended), ship (the sinks were busy with a symbolized interval), shutdown (not handed over within --shutdown-timeout).",
			[]string{"stage"}, nil),
		late: prometheus.NewDesc("ember_drains_late_total",
			"Drains of the kernel maps that came more than two drain periods after the one before.", nil, nil),
		recovered: prometheus.NewDesc("ember_tracer_recovered_total",
			"What the tracer made up for, by reason: missed_exit (a process found gone without an exit event, released), cpu_online (a CPU brought online after start, now sampled), unwind_entry_swept (an unwind entry of a process gone, unloaded), bad_binary (a binary whose reading panicked, walked with frame pointers), worker_panic (an unwind table job that panicked).",
			[]string{"reason"}, nil),
		limit: prometheus.NewDesc("ember_memory_limit_bytes",
			"The memory budget (--memory-limit) and the Go runtime's soft limit set from it.", []string{"of"}, nil),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.kernel
	ch <- m.cacheBytes
	ch <- m.cacheObjs
	ch <- m.mapBytes
	ch <- m.dropped
	ch <- m.late
	ch <- m.limit
	ch <- m.recovered
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	if st, err := m.a.Stats(); err == nil {
		for name, v := range st {
			ch <- prometheus.MustNewConstMetric(m.kernel, prometheus.CounterValue, float64(v), name)
		}
	}
	for reason, v := range m.a.tr.Recoveries() {
		ch <- prometheus.MustNewConstMetric(m.recovered, prometheus.CounterValue, float64(v), reason)
	}
	if maps, err := m.a.MapMemory(); err == nil {
		for _, mm := range maps {
			ch <- prometheus.MustNewConstMetric(m.mapBytes, prometheus.GaugeValue, float64(mm.Bytes), mm.Name)
		}
	}
	drops := m.a.drops.all()
	for _, stage := range []string{stageCollect, stageSymbolize, stageShip, stageShutdown} {
		ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.CounterValue, float64(drops[stage]), stage)
	}
	ch <- prometheus.MustNewConstMetric(m.late, prometheus.CounterValue, float64(m.a.health.lateDrains()))
	if l := m.a.cfg.Memory.Limit; l > 0 {
		ch <- prometheus.MustNewConstMetric(m.limit, prometheus.GaugeValue, float64(l), "budget")
		ch <- prometheus.MustNewConstMetric(m.limit, prometheus.GaugeValue, float64(m.a.goLimit.Load()), "go_runtime")
	}
	objs, bytes := m.a.SymbolCache()
	ch <- prometheus.MustNewConstMetric(m.cacheBytes, prometheus.GaugeValue, float64(bytes))
	ch <- prometheus.MustNewConstMetric(m.cacheObjs, prometheus.GaugeValue, float64(objs))
}

// NewRegistry returns a registry with the Go runtime and process collectors
// (process_resident_memory_bytes and friends).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// ServeMetrics registers the agent's metrics on reg and serves /metrics and
// /healthz on addr until ctx ends.
func (a *Agent) ServeMetrics(ctx context.Context, addr string, reg *prometheus.Registry) error {
	if err := reg.Register(newMetrics(a)); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ok, body := a.Health()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprint(w, body)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics address %s: %w", addr, err)
	}
	a.log.Info("serving metrics", "addr", ln.Addr().String())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server", "err", err)
		}
	}()
	return nil
}
