package tracer

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
// decide every time, as before the cache.
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
			for b.Loop() {
				tr, err := Start(c.cfg, proc.NewTable())
				if err != nil {
					b.Fatal(err)
				}
				tr.Close()
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		})
	}
}

// cpuTime is this process's user+system time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
