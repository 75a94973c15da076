package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/export/sink"
	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/tracer"
	"github.com/emberprof/ember/symbolize"
	"github.com/emberprof/ember/symbolize/debuginfod"
)

// Config is what `ember agent` was asked for.
type Config struct {
	Tracer   tracer.Config
	Mode     pprof.Mode    // cpu, offcpu or wall (wall ships both a CPU and an off-CPU profile)
	Interval time.Duration // one profile per service per interval
	SplitBy  string        // "service" (default) or "pid"
	Services ServiceNamer
	Sink     sink.Sink
	// FlushTimeout bounds the delivery of the last partial interval at exit.
	FlushTimeout time.Duration
	// SymbolCacheBytes is the symbolizer's cache budget.
	SymbolCacheBytes int64
	Logger           *slog.Logger
	// Debuginfod, if set, fetches missing debug files in the background;
	// later profiles get their names. The caller closes it.
	Debuginfod *debuginfod.Client
}

// Agent is a running `ember agent`.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	procs  *proc.Table
	tr     *tracer.Tracer
	sym    *symbolize.Symbolizer
	health health

	mu  sync.Mutex
	col *collector // the interval being collected; also the symbolizer's opener
}

// agentDrainEvery is how often the agent empties the kernel maps within an
// interval, so they stay small whatever the interval.
const agentDrainEvery = time.Second

// Start loads and attaches the tracer and returns the agent; Run drives it.
func Start(cfg Config) (*Agent, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 15 * time.Second
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = 10 * time.Second
	}
	if cfg.Tracer.Frequency <= 0 {
		cfg.Tracer.Frequency = 19
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.Sink == nil {
		return nil, errors.New("agent: no sink configured (give --output-dir and/or --pyroscope-url)")
	}
	tc := cfg.Tracer
	tc.OnCPU = cfg.Mode != pprof.ModeOffCPU
	tc.OffCPU = cfg.Mode != pprof.ModeCPU
	tc.DrainInterval = agentDrainEvery
	a := &Agent{cfg: cfg, log: cfg.Logger, procs: proc.NewTable()}
	tr, err := tracer.Start(tc, a.procs)
	if err != nil {
		a.procs.Close()
		return nil, err
	}
	a.tr = tr
	for _, n := range tracer.CapabilityNotes() {
		a.log.Warn(n)
	}
	a.sym = symbolize.New(symbolize.Options{CacheBytes: cfg.SymbolCacheBytes, Open: a.open,
		DebugSource: debugSource(cfg.Debuginfod)})
	a.col = a.newCollector(time.Now())
	return a, nil
}

func (a *Agent) newCollector(start time.Time) *collector {
	c := newCollector(a.collectMode(), a.cfg.Tracer.Frequency, start, a.procs)
	c.service = a.cfg.Services.Name
	c.wakers = a.cfg.Mode != pprof.ModeCPU && a.cfg.Tracer.Wakers
	return c
}

// collectMode is wall whenever off-CPU time is collected: the split into a
// CPU and an off-CPU profile happens at emit time.
func (a *Agent) collectMode() pprof.Mode {
	if a.cfg.Mode == pprof.ModeCPU {
		return pprof.ModeCPU
	}
	return pprof.ModeWall
}

func (a *Agent) open(m *profile.Mapping) (*os.File, error) {
	a.mu.Lock()
	c := a.col
	a.mu.Unlock()
	return c.open(m)
}

// Run samples until ctx ends, emitting a profile per service every
// interval; at the end it emits the last partial interval and closes the
// sink within FlushTimeout.
func (a *Agent) Run(ctx context.Context) error {
	defer a.close()
	drain := time.NewTicker(agentDrainEvery)
	defer drain.Stop()
	emit := time.NewTicker(a.cfg.Interval)
	defer emit.Stop()
	a.health.ok(time.Now())
	for {
		select {
		case <-ctx.Done():
			a.drain()
			a.emit(time.Now())
			flush, cancel := context.WithTimeout(context.Background(), a.cfg.FlushTimeout)
			defer cancel()
			if err := a.cfg.Sink.Close(flush); err != nil {
				return fmt.Errorf("flush sinks: %w", err)
			}
			return nil
		case <-drain.C:
			a.drain()
		case now := <-emit.C:
			a.drain()
			a.emit(now)
		}
	}
}

func (a *Agent) drain() {
	samples, err := a.tr.Drain()
	if err != nil {
		a.log.Error("drain kernel maps", "err", err)
		return
	}
	a.col.add(samples)
	a.health.ok(time.Now())
}

// emit finishes the interval's profile, symbolizes it once, splits it per
// service (and kind) and hands the pieces to the sink, then starts the next
// interval and forgets processes that exited.
func (a *Agent) emit(now time.Time) {
	a.mu.Lock()
	col := a.col
	a.mu.Unlock()
	p := col.b.Profile(now)
	if st, err := a.tr.Stats(); err == nil {
		col.b.Comment("ember: %s", statsLine(st))
	}
	if len(p.Sample) > 0 {
		if err := a.sym.Symbolize(p); err != nil {
			a.log.Debug("symbolize", "err", err)
		}
		if a.cfg.Mode != pprof.ModeCPU {
			annotateOffCPU(p)
		}
		for _, out := range a.split(p) {
			out.Time = now
			if err := a.cfg.Sink.Enqueue(out); err != nil {
				a.log.Warn("profile refused by a sink", "service", out.Service, "name", out.Name, "err", err)
			}
		}
	}
	a.mu.Lock()
	a.col = a.newCollector(now)
	a.mu.Unlock()
	a.procs.Sweep()
}

// close releases the tracer, symbolizer and process table.
func (a *Agent) close() {
	a.tr.Close()
	a.sym.Close()
	a.procs.Close()
}

// Stats returns the kernel-side counters.
func (a *Agent) Stats() (map[string]uint64, error) { return a.tr.Stats() }

// MapMemory returns the kernel memory of every BPF map, largest first.
func (a *Agent) MapMemory() ([]tracer.MapMemory, error) { return a.tr.MapMemory() }

// SymbolCache returns the symbolizer's cached objects and bytes.
func (a *Agent) SymbolCache() (int, int64) { return a.sym.CacheStats() }

// Healthy reports whether the kernel maps were drained recently.
func (a *Agent) Healthy() bool { return a.health.since() < 5*agentDrainEvery }

type health struct {
	mu   sync.Mutex
	last time.Time
}

func (h *health) ok(t time.Time) {
	h.mu.Lock()
	h.last = t
	h.mu.Unlock()
}

func (h *health) since() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return time.Since(h.last)
}
