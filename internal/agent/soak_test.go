package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	runtimepprof "runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emberprof/ember/export/filesink"
	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/export/sink"
	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/internal/tracer"
)

// SoakEnv gives TestAgentSoak its duration (e.g. 10m; `make soak` sets it).
const SoakEnv = "EMBER_SOAK"

// timedSink takes delay per profile, like a slow disk, and remembers which
// intervals (by end time) reached it.
type timedSink struct {
	delay time.Duration
	mu    sync.Mutex
	ends  map[time.Time]bool
	n     int
}

func (s *timedSink) Enqueue(p sink.Profile) error {
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ends[p.Time] = true
	s.n++
	return nil
}

func (s *timedSink) Close(context.Context) error { return nil }

// The agent in its default 128 MiB budget (EMBER_SOAK_LIMIT_MIB sets another)
// for EMBER_SOAK (10 minutes in CI, by `make
// soak`): thousands of short processes (copies of one binary under 16
// names, so 16 services, each process spinning 10 ms) in a cgroup of their
// own, on- and off-CPU at 49 Hz, 5 s intervals, shipped to real files and to
// a sink that takes 250 ms per profile (about 9 s per interval of 5 s: it
// falls behind). RSS plus the kernel memory of the BPF maps stays under the
// budget, no drain is late, and every interval is accounted for: shipped,
// or dropped and counted at the stage that was behind.
func TestAgentSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv(SoakEnv))
	if err != nil || d <= 0 {
		t.Skipf("set %s to a duration (make soak: 10m) to soak the agent", SoakEnv)
	}
	testutil.RequireRoot(t)
	limit := int64(DefaultMemoryLimit)
	if v := os.Getenv(SoakEnv + "_LIMIT_MIB"); v != "" {
		n, _ := strconv.Atoi(v)
		limit = int64(n) << 20
	}
	budget, err := PlanMemory(limit)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(SoakEnv+"_PROFILES") != "" {
		// Who waited on a lock, and for how long (the drain must not).
		runtime.SetBlockProfileRate(int(time.Millisecond))
		runtime.SetMutexProfileFraction(1)
	}
	dir := t.TempDir()
	bin := testutil.BuildCC(t, "clang-19", filepath.Join(dir, "cpusplit"), []string{"-O2", "-g", "-fno-omit-frame-pointer", "-pthread"}, "cpusplit/cpusplit.c")
	var bins []string
	for i := range 16 {
		b := filepath.Join(dir, "svc"+strconv.Itoa(i))
		if err := os.Link(bin, b); err != nil {
			t.Fatal(err)
		}
		bins = append(bins, b)
	}
	cg, err := os.MkdirTemp(testutil.Cgroup2Mount(t), "ember-soak-")
	if err != nil {
		testutil.SkipOrFail(t, "cannot create a cgroup v2: %v", err)
	}
	defer os.Remove(cg)
	files, err := filesink.New(filesink.Config{Dir: filepath.Join(dir, "out"), MaxBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	slow := &timedSink{delay: 250 * time.Millisecond, ends: map[time.Time]bool{}}
	a, err := Start(Config{
		Tracer:   tracer.Config{Frequency: 49, Cgroups: []string{cg}},
		Mode:     pprof.ModeWall,
		Interval: 5 * time.Second,
		Sink:     sink.Multi(files, slow),
		Memory:   budget,
		// The slow sink takes 5 s per interval, and two may be queued
		// before the last.
		FlushTimeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	// A shell in the cgroup starts the processes, so they are born in it.
	script := `echo $$ > "$1/cgroup.procs"; shift; end=$(( $(date +%s) + $1 )); shift; n=0
		while [ "$(date +%s)" -lt "$end" ]; do for b in "$@"; do "$b" 0.01 >/dev/null; n=$((n+1)); done; done; echo $n`
	churn := exec.Command("sh", append([]string{"-c", script, "sh", cg, strconv.Itoa(int(d.Seconds()))}, bins...)...)
	var out strings.Builder
	churn.Stdout = &out
	if err := churn.Start(); err != nil {
		t.Fatal(err)
	}
	churned := make(chan error, 1)
	go func() { churned <- churn.Wait() }()

	var maxRSS, maxMaps, maxSum int64
	start := time.Now()
	lastLog := start
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for running := true; running; {
		select {
		case err := <-churned:
			if err != nil {
				t.Fatalf("churn: %v", err)
			}
			running = false
		case now := <-tick.C:
			rss, maps := selfRSS(t), a.mapBytes()
			if rss+maps >= limit && maxSum < limit {
				dumpProfiles(t, "") // the first time over the limit: what holds the memory
			}
			maxRSS, maxMaps, maxSum = max(maxRSS, rss), max(maxMaps, maps), max(maxSum, rss+maps)
			if now.Sub(lastLog) >= time.Minute {
				lastLog = now
				// One heap profile a minute, to diff (pprof -diff_base).
				dumpProfiles(t, fmt.Sprintf(".%03dm", int(now.Sub(start).Minutes())))
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				t.Logf("+%v: RSS %.1f MiB, maps %.1f MiB, Go heap in use %.1f MiB, %d goroutines, drops %v",
					now.Sub(start).Round(time.Second), float64(rss)/(1<<20), float64(maps)/(1<<20), float64(ms.HeapInuse)/(1<<20),
					runtime.NumGoroutine(), a.drops.all())
			}
		}
	}
	_, health := a.Health()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(out.String()))
	drops := a.drops.all()
	slow.mu.Lock()
	shipped, profiles := len(slow.ends), slow.n
	slow.mu.Unlock()
	intervals := a.intervals.Load()
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	t.Logf("soak %v: %d processes; max RSS %.1f MiB + max BPF maps %.1f MiB, max of the sum %.1f MiB, limit %d MiB (Go limit %.1f MiB)",
		time.Since(start).Round(time.Second), n, mib(maxRSS), mib(maxMaps), mib(maxSum), limit>>20, mib(a.goLimit.Load()))
	t.Logf("intervals %d: %d reached the slow sink (%d profiles), %d had no samples, dropped %v; late drains %d, longest gap between drains %v",
		intervals, shipped, profiles, a.empty.Load(), drops, a.health.lateDrains(), a.health.longestGap())
	t.Logf("healthz at the end:\n%s", health)
	if n < 1000 {
		t.Errorf("only %d processes: not the churn this test is about", n)
	}
	if maxSum >= limit {
		t.Errorf("RSS + BPF maps reached %.1f MiB, over the %d MiB limit", mib(maxSum), limit>>20)
	}
	if late := a.health.lateDrains(); late != 0 {
		t.Errorf("%d drains late (longest gap %v)", late, a.health.longestGap())
	}
	if drops[stageShip]+drops[stageSymbolize] == 0 {
		t.Errorf("nothing dropped behind a sink slower than the interval: %v", drops)
	}
	empty := a.empty.Load()
	if got := uint64(shipped) + empty + drops[stageCollect] + drops[stageShip] + drops[stageSymbolize] + drops[stageShutdown]; got != intervals {
		t.Errorf("%d intervals, but %d shipped + %d empty + %v dropped = %d: intervals unaccounted for", intervals, shipped, empty, drops, got)
	}
}

// dumpProfiles writes this process's heap and goroutine profiles to
// $EMBER_SOAK_PROFILES+suffix+.heap, .goroutine, .block and .mutex, if that
// is set.
func dumpProfiles(t *testing.T, suffix string) {
	base := os.Getenv(SoakEnv + "_PROFILES")
	if base == "" {
		return
	}
	for _, name := range []string{"heap", "goroutine", "block", "mutex"} {
		f, err := os.Create(base + suffix + "." + name)
		if err != nil {
			t.Log(err)
			return
		}
		runtimepprof.Lookup(name).WriteTo(f, 0)
		f.Close()
	}
	// The mappings too: what is resident outside the Go heap (binaries'
	// text, ring buffers, spilled sections, runtime overhead).
	if b, err := os.ReadFile("/proc/self/smaps"); err == nil {
		os.WriteFile(base+suffix+".smaps", b, 0o644)
	}
	if suffix == "" {
		t.Logf("over the limit: profiles in %s.heap, .goroutine and .smaps", base)
	}
}

// selfRSS returns this process's resident set in bytes, less the pages of
// BPF maps it maps (the ring buffers the tracer reads: their pages are the
// maps' kernel memory, counted once in mapBytes; a ring's data is mapped
// twice over, so RSS counts it twice more).
func selfRSS(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var rss, bpfMaps int64
	inMap := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			inMap = len(f) >= 6 && f[5] == "anon_inode:bpf-map"
		case len(f) == 3 && f[0] == "Rss:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss += kb << 10
			if inMap {
				bpfMaps += kb << 10
			}
		}
	}
	if rss == 0 {
		t.Fatal("no Rss in /proc/self/smaps")
	}
	return rss - bpfMaps
}
