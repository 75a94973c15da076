package tracer

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/testutil"
)

// BenchmarkStart measures the fixed cost every record and agent pays before
// its first sample: checks, probes, loading and verifying the programs of a
// mode, creating the maps, attaching, then closing it all. It reports the
// CPU (user+system: the kernel's verification is system time of this
// process) per start beside the wall time, as cpu-ms/op. Auto's decision
// is cached in a directory of the benchmark's (warm after the first start,
// as on every run after the first on a machine); the -nocache variants
// decide every time, as before the cache. sampling-cpu-ms/op is the part
// of it spent before the cpu-clock events are enabled: what stands between
// a start and its first sample (the rest, the table walker's verification
// in a whole-system recording, comes after).
func BenchmarkStart(b *testing.B) {
	testutil.RequireRoot(b)
	if err := Preflight(""); err != nil {
		testutil.SkipOrFail(b, "%v", err)
	}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer slog.SetDefault(old)
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"cpu", Config{OnCPU: true, Frequency: 99}},
		{"cpu-command", Config{OnCPU: true, Frequency: 99, FollowForks: true}},
		{"offcpu", Config{OffCPU: true}},
		{"wall", Config{OnCPU: true, OffCPU: true, Frequency: 99}},
		{"offcpu-nocache", Config{OffCPU: true}},
		{"wall-nocache", Config{OnCPU: true, OffCPU: true, Frequency: 99}},
	} {
		b.Run(c.name, func(b *testing.B) {
			if strings.HasSuffix(c.name, "-nocache") {
				b.Setenv(CacheDirEnv, "off")
			} else {
				b.Setenv(CacheDirEnv, b.TempDir())
			}
			cpu0 := cpuTime()
			var toSampling time.Duration
			for b.Loop() {
				before := cpuTime()
				tr, err := Start(c.cfg, proc.NewTable())
				if err != nil {
					b.Fatal(err)
				}
				toSampling += tr.samplingCPU - before
				tr.Close()
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(toSampling)/float64(time.Millisecond)/float64(b.N), "sampling-cpu-ms/op")
		})
	}
}
