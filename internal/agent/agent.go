package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

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
	// Memory is --memory-limit divided (PlanMemory); its zero value leaves
	// the maps, the cache and the Go runtime at their defaults.
	Memory Budget
}

// Agent is a running `ember agent`.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	procs  *proc.Table
	tr     *tracer.Tracer
	sym    *symbolize.Symbolizer
	health health

	goLimit   atomic.Int64 // the Go runtime's memory limit set from cfg.Memory (refreshGoLimit)
	prevDrain drainTiming  // the last drain's timing, for the warning of a late one (drain)
	drops     dropCounts
	lastShed  atomic.Bool   // the last interval was dropped at stage collect (Run's error says so)
	intervals atomic.Uint64 // intervals finished, the last partial one included
	empty     atomic.Uint64 // intervals with no samples: symbolized, nothing to ship
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
		cfg.Logger = slog.Default()
	}
	if cfg.SplitBy != "" && cfg.SplitBy != "service" && cfg.SplitBy != "pid" {
		return nil, fmt.Errorf("agent: split by %q: want service or pid", cfg.SplitBy)
	}
	if cfg.Sink == nil {
		return nil, errors.New("agent: no sink configured (give --output-dir and/or --pyroscope-url)")
	}
	tc := cfg.Tracer
	tc.OnCPU = cfg.Mode != pprof.ModeOffCPU
	tc.OffCPU = cfg.Mode != pprof.ModeCPU
	tc.DrainInterval = agentDrainEvery
	tc.DrainNoWait = true // a copied stack not walked yet comes with a later drain
	if cfg.Memory.Limit > 0 {
		tc.UnwindRowBytes = cfg.Memory.UnwindRowBytes
		tc.StackMapBytes = cfg.Memory.StackMapBytes
		tc.UnwindCacheBytes = cfg.Memory.UnwindCache
		tc.KnownPIDEntries = cfg.Memory.KnownPIDs
		tc.StackCopyBytes = cfg.Memory.StackCopyBytes
		if cfg.SymbolCacheBytes <= 0 {
			cfg.SymbolCacheBytes = cfg.Memory.SymbolCache
		}
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, procs: proc.NewTable()}
	tr, err := tracer.Start(tc, a.procs)
	if err != nil {
		a.procs.Close()
		return nil, err
	}
	a.tr = tr
	tracer.ReleaseLoadCaches() // loaded once: the agent runs on without them
	for _, n := range tracer.CapabilityNotes() {
		a.log.Warn(n)
	}
	symbolize.SetSectionCacheDir(tracer.SectionCacheDir())
	symbolize.SetKernelCacheDir(tracer.KernelCacheDir())
	a.sym = symbolize.New(symbolize.Options{CacheBytes: cfg.SymbolCacheBytes,
		Files: a.procs.Files(), DebugSource: debugSource(cfg.Debuginfod)})
	if cfg.Memory.Limit > 0 {
		// The first limit is set before the start-up code is given back:
		// within seconds the code the agent runs is resident again (12-13
		// MiB of its 16.5), and a limit computed from the trimmed reading
		// left the first interval's Go heap that much more room than the
		// budget has (64 MiB: a 35 MiB limit, 25 MiB from the second
		// interval on). Each interval's refresh then reads what is there.
		a.refreshGoLimit()
		if n, err := trimOwnText(); err != nil {
			a.log.Debug("memory budget", "err", err)
		} else {
			a.log.Debug("memory budget: own text given back", "bytes", n)
		}
		a.log.Debug("memory budget", "limit", cfg.Memory.Limit, "bpf_maps", a.mapBytes(),
			"symbol_cache", cfg.SymbolCacheBytes, "go_limit", a.goLimit.Load())
	}
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

// mapBytes is the kernel memory of the tracer's BPF maps.
func (a *Agent) mapBytes() int64 {
	maps, err := a.tr.MapMemory()
	if err != nil {
		return 0
	}
	var n int64
	for _, m := range maps {
		n += int64(m.Bytes)
	}
	return n
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

// GoMemoryLimit is the Go runtime's memory limit the agent set (or found).
func (a *Agent) GoMemoryLimit() int64 { return a.goLimit.Load() }

// refreshGoLimit sets the Go runtime's memory limit from the budget and
// what the maps and the file-backed pages hold now: the agent's own code
// pages back in as it runs (trimOwnText gave back start-up's), and the
// symbolizer maps binaries and spilled sections; a limit computed once at
// start left the Go heap room those took later. Once per interval.
func (a *Agent) refreshGoLimit() {
	if a.cfg.Memory.Limit > 0 {
		a.goLimit.Store(a.cfg.Memory.applyGoLimit(a.mapBytes(), os.Getenv("GOMEMLIMIT")))
	}
}

// SymbolCache returns the symbolizer's cached objects and bytes.
func (a *Agent) SymbolCache() (int, int64) { return a.sym.CacheStats() }
