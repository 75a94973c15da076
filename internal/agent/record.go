package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/tracer"
	"github.com/emberprof/ember/symbolize"
	"github.com/emberprof/ember/symbolize/debuginfod"
)

// RecordConfig is what `ember record` was asked for.
type RecordConfig struct {
	Tracer   tracer.Config
	Mode     pprof.Mode
	Duration time.Duration // 0: until ctx ends or Command exits
	Command  []string      // launch and profile this, with its children
	// Outputs are the files to write, each in the form its extension picks
	// (several forms of one recording).
	Outputs  []string
	Stderr   *os.File // summary and live status; nil for os.Stderr
	BPFStats bool     // account the BPF programs' run time and report it
	// Debuginfod, if set, fetches missing debug files before the profile
	// is symbolized, waiting up to DebuginfodWait (DefaultDebuginfodWait).
	Debuginfod     *debuginfod.Client
	DebuginfodWait time.Duration
}

// ProcessStart is CLOCK_MONOTONIC when the process started main; main sets
// it, and time to first sample is measured from it.
var ProcessStart time.Duration

// Summary is what `record` reports at the end.
type Summary struct {
	Samples   uint64            // on-CPU samples taken (after filtering)
	Processes int               // distinct processes in the profile
	Stats     map[string]uint64 // every kernel-side counter
	Outputs   []string
	Profile   *profile.Profile
	ExitCode  int // of the launched command

	FirstSample time.Duration         // from ProcessStart to the first sample; 0: none
	Maps        []tracer.MapMemory    // kernel memory of every BPF map, largest first
	Programs    []tracer.ProgramStats // with RecordConfig.BPFStats

	OffCPUMethod tracer.OffCPUMethod // how off-CPU blocks were hooked
	RQClock      bool                // and timed on the runqueue clock

	Unwind      tracer.UnwindMode   // how on-CPU user stacks were walked
	UnwindStats *tracer.UnwindStats // tables loaded; nil with frame pointers
}

// Lost returns the total of the counters that count lost stacks or samples.
func (s *Summary) Lost() uint64 {
	var n uint64
	for k, v := range s.Stats {
		if isLossStat(k) {
			n += v
		}
	}
	return n
}

func isLossStat(name string) bool {
	switch name {
	case "samples", "offcpu_blocks", "offcpu_blocks_kept", "kernel_stack_none", "unwind_walks",
		"offcpu_resume_work_failed", // not lost: attributed at the next switch-out
		"offcpu_blocks_uncaptured":  // not lost: sampled, the blocks kept weighted for them
		return false
	}
	return true
}

// drainEvery is how often record empties the kernel maps: small enough that
// the maps stay small, large enough that draining costs nothing.
const drainEvery = 500 * time.Millisecond

// Record profiles until ctx ends, cfg.Duration passes or cfg.Command exits,
// then symbolizes and writes the profile to cfg.Output.
func Record(ctx context.Context, cfg RecordConfig) (*Summary, error) {
	stderr := cfg.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	if len(cfg.Outputs) == 0 {
		return nil, errors.New("record: no output file")
	}
	for _, o := range cfg.Outputs {
		if err := checkOutput(o); err != nil {
			return nil, err
		}
	}
	tc := cfg.Tracer
	tc.OnCPU = cfg.Mode != pprof.ModeOffCPU
	tc.OffCPU = cfg.Mode != pprof.ModeCPU
	tc.DrainInterval = drainEvery
	if tc.StackCopyBytes == 0 && tc.OffCPU {
		// On-CPU only, the tracer sizes the ring from the rate
		// (tracer.Config.StackCopyBytes).
		tc.StackCopyBytes = recordStackCopyBytes
	}

	var cmd *launched
	if len(cfg.Command) > 0 {
		var err error
		if err = tracer.Preflight(tc.KernelBTF); err != nil {
			return nil, err
		}
		if cmd, err = startHeld(cfg.Command); err != nil {
			return nil, err
		}
		tc.PIDs = append(tc.PIDs, cmd.pid())
		tc.FollowForks = true
	}
	if cfg.BPFStats {
		st, err := tracer.EnableProgramStats()
		if err != nil {
			return nil, err
		}
		defer st.Close()
	}
	procs := proc.NewTable()
	defer procs.Close()
	tr, err := tracer.Start(tc, procs)
	if err != nil {
		if cmd != nil {
			cmd.abort()
		}
		return nil, err
	}
	defer tr.Close()
	// A recording loads nothing more: the parsed BPF object and decoded
	// kernel BTF (about 6 MiB of heap), and the start-up code's resident
	// pages, would stay in its peak RSS, which comes at the end.
	tracer.ReleaseLoadCaches()
	if _, err := trimOwnText(); err != nil {
		slog.Debug("record: own text kept", "err", err)
	}
	for _, n := range tracer.CapabilityNotes() {
		fmt.Fprintf(stderr, "ember: %s\n", n)
	}

	start := time.Now()
	col := newCollector(cfg.Mode, tc.Frequency, start, procs)
	col.wakers = tc.OffCPU && tc.Wakers
	defer col.close()
	exited := make(chan error, 1)
	if cmd != nil {
		if err := cmd.release(); err != nil {
			return nil, fmt.Errorf("release command: %w", err)
		}
		go func() { exited <- cmd.cmd.Wait() }()
	}
	var deadline <-chan time.Time
	if cfg.Duration > 0 {
		deadline = time.After(cfg.Duration)
	}
	tick := time.NewTicker(drainEvery)
	defer tick.Stop()
	term := isTerminal(stderr)
	sum := &Summary{Outputs: cfg.Outputs}
	var cmdErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-deadline:
			break loop
		case cmdErr = <-exited:
			exited = nil
			break loop
		case <-tick.C:
			if err := drainInto(tr, col, procs); err != nil {
				return nil, err
			}
			if term {
				st, _ := tr.Stats()
				s := &Summary{Stats: st}
				statusLine(stderr, time.Since(start), st["samples"], s.Lost())
			}
		}
	}
	if term {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err := drainInto(tr, col, procs); err != nil {
		return nil, err
	}
	end := time.Now()
	if sum.Stats, err = tr.Stats(); err != nil {
		return nil, err
	}
	sum.Stats[UnmappedStat] = col.unmapped
	if first := tr.FirstSample(); first > 0 && ProcessStart > 0 {
		sum.FirstSample = first - ProcessStart
	}
	if cfg.BPFStats {
		sum.Programs = tr.ProgramStats()
	}
	// Read before Close, and after the run: maps allocated as they fill
	// (hash maps without preallocation) hold most at the end.
	if sum.Maps, err = tr.MapMemory(); err != nil {
		fmt.Fprintf(stderr, "ember: %v\n", err)
	}
	sum.Unwind = tr.UnwindMode()
	sum.OffCPUMethod, sum.RQClock = tr.OffCPUMethod()
	if us, ok := tr.UnwindStats(); ok {
		sum.UnwindStats = &us
	}
	tr.Close()
	if cmd != nil && exited != nil {
		// Stopped before the command ended: leave it running, as perf does.
		cmdErr = nil
	}
	sum.ExitCode = exitCode(cmdErr)

	col.b.Comment("ember: %s", statsLine(sum.Stats))
	if sum.Stats["offcpu_blocks"] > 0 {
		col.b.Comment("ember: off-CPU: %s", sum.offCPULine())
	}
	for _, line := range sum.details() {
		col.b.Comment("ember: %s", line)
	}
	p := col.b.Profile(end)
	symbolize.SetSectionCacheDir(tracer.SectionCacheDir())
	symbolize.SetKernelCacheDir(tracer.KernelCacheDir())
	sym := symbolize.New(symbolize.Options{Open: col.open, OpenObject: col.object, Files: procs.Files(),
		DebugSource: debugSource(cfg.Debuginfod), CacheBytes: recordSymbolCacheBytes})
	defer sym.Close()
	if cfg.Debuginfod != nil {
		fetchDebugInfo(sym, cfg.Debuginfod, p, cmp.Or(cfg.DebuginfodWait, DefaultDebuginfodWait), stderr)
	}
	if err := sym.Symbolize(p); err != nil {
		lines := strings.Split(err.Error(), "\n")
		fmt.Fprintf(stderr, "ember: %d mappings left unsymbolized (first: %s)\n", len(lines), lines[0])
	}
	if tc.OffCPU {
		annotateOffCPU(p)
	}
	for _, o := range cfg.Outputs {
		if err := writeOutput(o, p); err != nil {
			return nil, err
		}
	}
	sum.Samples = sum.Stats["samples"]
	sum.Processes = len(col.pids)
	sum.Profile = p
	return sum, nil
}

// recordStackCopyBytes sizes the ring of stack copies of a recording that
// takes off-CPU blocks (the agent's is a share of its --memory-limit, 2 MiB
// at 128 MiB). The copies of a whole-system recording come in floods: until its tables are in, every
// sample and kept off-CPU block of a process is copied (8 KiB each), and
// the multi-threaded processes met at the start blocked 2,500 times a second
// between them on a loaded 2-CPU machine, filling 2 MiB whenever the reader
// was not scheduled for a tenth of a second: then a new process's copies
// are refused and its stacks walked with frame pointers (counted, marked).
const recordStackCopyBytes = 8 << 20

// recordSymbolCacheBytes is the symbolizer's object budget in record, which
// symbolizes one profile once, file after file (the object in use is kept
// whatever its size): an object is not needed after its file's mappings,
// and keeping every one (256 MiB by default) made the end of a whole-system
// recording its peak heap (symbol tables, decompressed DWARF).
const recordSymbolCacheBytes = 4 << 20

func drainInto(tr *tracer.Tracer, col *collector, procs *proc.Table) error {
	samples, err := tr.Drain()
	if err != nil {
		return err
	}
	col.add(samples)
	return nil
}

func exitCode(err error) int {
	var ee interface{ ExitCode() int }
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return 0
}

// WriteSummary prints the end-of-record summary: samples, processes and
// outputs, off-CPU blocks when there were any, the lost stacks by reason
// when any were lost, the time to the first sample, and the kernel memory
// of the BPF maps. With detail (--log-level debug) it adds every loss
// counter (zeros included), the unwind tables, each map's memory and the
// BPF programs' run times; the profile's comments have those too.
func WriteSummary(w io.Writer, s *Summary, detail bool) {
	fmt.Fprintf(w, "ember: %d samples from %d processes written to %s\n", s.Samples, s.Processes, strings.Join(s.Outputs, ", "))
	if s.Stats["offcpu_blocks"] > 0 {
		fmt.Fprintf(w, "ember: off-CPU: %s\n", s.offCPULine())
	}
	var parts []string
	for _, k := range sortedKeys(s.Stats) {
		if isLossStat(k) && (detail || s.Stats[k] > 0) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, s.Stats[k]))
		}
	}
	if s.Lost() > 0 || detail {
		fmt.Fprintf(w, "ember: lost %d: %s\n", s.Lost(), strings.Join(parts, " "))
	}
	if s.FirstSample > 0 {
		fmt.Fprintf(w, "ember: first sample %.1fms after start\n", float64(s.FirstSample.Microseconds())/1000)
	}
	if len(s.Maps) > 0 {
		var total uint64
		for _, m := range s.Maps {
			total += m.Bytes
		}
		if !detail {
			fmt.Fprintf(w, "ember: kernel memory of BPF maps %.1f MiB in %d maps\n", float64(total)/(1<<20), len(s.Maps))
		}
	}
	if detail {
		for _, line := range s.details() {
			fmt.Fprintf(w, "ember: %s\n", line)
		}
	}
	sort.Slice(s.Programs, func(i, j int) bool { return s.Programs[i].Name < s.Programs[j].Name })
	for _, p := range s.Programs { // asked for with --bpf-stats
		per := time.Duration(0)
		if p.Runs > 0 {
			per = p.RunTime / time.Duration(p.Runs)
		}
		fmt.Fprintf(w, "ember: bpf %s: %d runs, %s run time, %s per run\n", p.Name, p.Runs, p.RunTime, per)
	}
}

func (s *Summary) offCPULine() string {
	clock := "bpf_ktime_get_ns"
	if s.RQClock {
		clock = "runqueue clock"
	}
	return fmt.Sprintf("%d blocks, %d kept by duration-weighted sampling (method %s, %s)",
		s.Stats["offcpu_blocks"], s.Stats["offcpu_blocks_kept"], s.OffCPUMethod, clock)
}

// details are the summary's lines for --log-level debug and the profile's
// comments: how user stacks were walked, and each BPF map's memory.
func (s *Summary) details() []string {
	var out []string
	if us := s.UnwindStats; us != nil {
		out = append(out, fmt.Sprintf("unwind tables: %d processes, %d tables, %d KiB in maps (largest %s, %d KiB); %d built in %s; %d loads waited for a large table built in the background",
			us.Processes, us.Tables, us.Bytes>>10, us.Largest, us.LargestB>>10, us.Built, us.BuildTime.Round(time.Millisecond), us.Deferred))
		if us.GoTables > 0 || us.GoFramePointers > 0 {
			// A Go binary before Go 1.20 is walked with frame pointers:
			// its frameless leaves lose their callers, so say so.
			out = append(out, fmt.Sprintf("Go: %d tables from .gopclntab (%d functions not described); %d mappings of Go before 1.20 walked with frame pointers",
				us.GoTables, us.GoBadFuncs, us.GoFramePointers))
		}
		if us.BadBinaries > 0 || us.Recovered > 0 {
			// Hostile or corrupt binaries: their code was walked with
			// frame pointers (tracer's ELF boundary, #17).
			out = append(out, fmt.Sprintf("unwind tables: %d binaries could not be read (walked with frame pointers), %d worker panics recovered",
				us.BadBinaries, us.Recovered))
		}
	} else if s.Unwind == tracer.UnwindFP {
		out = append(out, "user stacks walked with frame pointers only")
	}
	if len(s.Maps) > 0 {
		out = append(out, MapMemoryLine(s.Maps))
	}
	return out
}

// MapMemoryLine renders the kernel memory of the BPF maps: the total, then
// every map, largest first, in KiB.
func MapMemoryLine(maps []tracer.MapMemory) string {
	var total uint64
	parts := make([]string, 0, len(maps))
	for _, m := range maps {
		total += m.Bytes
		parts = append(parts, fmt.Sprintf("%s=%dK", m.Name, (m.Bytes+1023)>>10))
	}
	return fmt.Sprintf("kernel memory of BPF maps %.1f MiB in %d maps: %s", float64(total)/(1<<20), len(maps), strings.Join(parts, " "))
}

// statsLine renders every counter as "name=value ...", sorted by name.
func statsLine(stats map[string]uint64) string {
	parts := make([]string, 0, len(stats))
	for _, k := range sortedKeys(stats) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, stats[k]))
	}
	return strings.Join(parts, " ")
}

func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
