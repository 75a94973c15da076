package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/internal/testutil/pyroscopetest"
)

// startAgent starts `ember agent` with args and returns it; its stderr is
// logged when the test ends.
func startAgent(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(emberBin(t), append([]string{"agent"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		t.Logf("agent stderr:\n%.4000s", stderr.String())
	})
	return cmd, &stderr
}

// peakRSS returns the largest of five RSS readings a second apart: one
// reading can fall anywhere in the Go heap's collection cycle.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	var peak int64
	for i := 0; i < 5; i++ {
		peak = max(peak, rssKiB(t, pid))
		time.Sleep(time.Second)
	}
	return peak
}

// rssKiB returns a process's resident set in KiB, and logs its parts
// (anonymous memory, mapped files).
func rssKiB(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	var rss int64 = -1
	var parts []string
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(k, "Rss") && k != "VmRSS" {
			continue
		}
		parts = append(parts, k+"="+strings.TrimSpace(v))
		if k == "VmRSS" {
			rss, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	if rss < 0 {
		t.Fatal("no VmRSS")
	}
	t.Logf("agent memory: %s", strings.Join(parts, " "))
	return rss
}

// SIGTERM in the middle of an interval delivers the last partial interval
// before the agent exits, and the agent exits 0.
func TestAgentSIGTERMFlushes(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := buildCPUSplit(t, dir)
	w := exec.Command(bin, "30")
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { w.Process.Kill(); w.Wait() }()
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	defer srv.Close()
	agent, stderr := startAgent(t, "--pyroscope-url", srv.URL, "--interval", "60s", "-F", "99", "--pid", strconv.Itoa(w.Process.Pid),
		"--metrics-addr", "127.0.0.1:0")
	time.Sleep(4 * time.Second)
	checkMetrics(t, stderr.String())
	sent := time.Now()
	agent.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	series, err := srv.WaitSeries(ctx, 1)
	if err != nil {
		t.Fatalf("no profile delivered after SIGTERM: %v", err)
	}
	if err := agent.Wait(); err != nil {
		t.Fatalf("agent exit: %v", err)
	}
	ser := series[0]
	cpu := pyroscopetest.Total(ser.Profile, "cpu")
	t.Logf("after SIGTERM: %s %s delivered in %v with %.2fs of CPU", ser.Labels["__name__"], ser.Labels["service_name"], ser.Time.Sub(sent), float64(cpu)/1e9)
	if ser.Labels["__name__"] != "process_cpu" || ser.Labels["service_name"] != "cpusplit" || cpu == 0 {
		t.Errorf("last partial profile: labels %v, cpu %d", ser.Labels, cpu)
	}
}

// churnProcesses is how many short processes TestAgentChurn's measured
// churn starts at least.
const churnProcesses = 1000

// Thousands of short-lived processes over a minute: the agent's memory stays
// flat (within 20% of its warmed-up RSS), and nothing panics.
func TestAgentChurn(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("a minute of process churn")
	}
	dir := t.TempDir()
	bin := buildCPUSplit(t, dir)
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	defer srv.Close()
	// The churn runs in a cgroup of its own and the agent profiles that
	// cgroup, so that other tests running beside this one do not change
	// what the agent sees.
	cg, err := os.MkdirTemp(testutil.Cgroup2Mount(t), "ember-churn-")
	if err != nil {
		testutil.SkipOrFail(t, "cannot create a cgroup v2: %v", err)
	}
	defer os.Remove(cg)
	// The symbolizer's cache is bounded by its budget; a small one is reached
	// during the warm-up even on a quiet machine, so what is measured after
	// it is whether anything else grows with process churn.
	agent, stderr := startAgent(t, "--pyroscope-url", srv.URL, "--interval", "5s", "-F", "99", "--mode", "wall",
		"--symbol-cache-bytes", strconv.Itoa(32<<20), "--cgroup", "/"+filepath.Base(cg))
	churn := func(d time.Duration) int {
		// A shell in the cgroup starts the processes, so they are born in it.
		// Each spins for 10 ms: long enough to be sampled now and then, so
		// the agent reads and forgets many processes. It churns for d, and
		// on until it has started churnProcesses (at most 3d): on a loaded
		// machine (load 14-23) a shell started only 449-765 in 60 s, and
		// the test is about the count, not the machine's speed.
		script := `echo $$ > "$1/cgroup.procs"; n=0; now=$(date +%s); end=$(( now + $2 )); cap=$(( now + 3 * $2 ));
			while [ "$(date +%s)" -lt "$end" ] || { [ "$n" -lt "$4" ] && [ "$(date +%s)" -lt "$cap" ]; }; do
				"$3" 0.01 >/dev/null; n=$((n+1)); done; echo $n`
		out, err := exec.Command("sh", "-c", script, "sh", cg, strconv.Itoa(int(d.Seconds())), bin, strconv.Itoa(churnProcesses)).Output()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		return n
	}
	churn(time.Duration(envSeconds("EMBER_CHURN_WARMUP", 15)) * time.Second) // warm-up: caches, maps and the Go heap settle
	warm := peakRSS(t, agent.Process.Pid)
	began := time.Now()
	n := churn(time.Duration(envSeconds("EMBER_CHURN_SECONDS", 60)) * time.Second)
	took := time.Since(began).Round(time.Second)
	time.Sleep(6 * time.Second) // one more interval
	end := peakRSS(t, agent.Process.Pid)
	t.Logf("%d processes in %v; agent RSS %d KiB after warm-up, %d KiB at the end (%+.1f%%); %d profiles received",
		n, took, warm, end, 100*float64(end-warm)/float64(warm), len(srv.Series()))
	reqs := srv.Requests()
	for i, r := range reqs {
		if i < 5 || r.Status != 200 {
			t.Logf("request %d: %s %d %s", i, r.Path, r.Status, r.Error)
		}
		if i > 20 {
			break
		}
	}
	if n < churnProcesses {
		t.Errorf("only %d processes: not the churn this test is about", n)
	}
	if float64(end) > 1.2*float64(warm) {
		t.Errorf("agent RSS grew from %d to %d KiB", warm, end)
	}
	if strings.Contains(stderr.String(), "panic") {
		t.Errorf("agent panicked")
	}
	if agent.ProcessState != nil {
		t.Fatalf("agent exited early: %v", agent.ProcessState)
	}
}

func envSeconds(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// checkMetrics scrapes the agent's /metrics and /healthz at the address it
// logged.
func checkMetrics(t *testing.T, log string) {
	t.Helper()
	m := regexp.MustCompile(`msg="serving metrics" addr=(\S+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("agent did not log its metrics address:\n%s", log)
	}
	get := func(path string) string {
		resp, err := http.Get("http://" + m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
		return string(b)
	}
	if h := get("/healthz"); !strings.Contains(h, "ok") {
		t.Errorf("/healthz: %q", h)
	}
	metrics := get("/metrics")
	for _, want := range []string{
		`ember_kernel_events_total{counter="samples"}`,
		`ember_kernel_events_total{counter="user_stack_collision"}`,
		"ember_pyroscope_profiles_sent_total", "ember_pyroscope_queue_bytes",
		`ember_pyroscope_profiles_dropped_total{reason="queue_full"}`,
		"ember_symbolizer_cache_bytes", "process_resident_memory_bytes",
		`ember_bpf_map_memory_bytes{map="counts0"}`, `ember_bpf_map_memory_bytes{map="pids"}`,
		`ember_tracer_recovered_total{reason="missed_exit"}`, `ember_tracer_recovered_total{reason="cpu_online"}`,
		`ember_tracer_recovered_total{reason="unwind_entry_swept"}`, `ember_tracer_recovered_total{reason="bad_binary"}`,
		`ember_tracer_recovered_total{reason="worker_panic"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The README names every family the agent serves (a sink's by the
	// part after ember_pyroscope_ or ember_otlp_), and serves every one
	// it names for the agent itself.
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, fam := range regexp.MustCompile(`(?m)^# TYPE (ember_\w+)`).FindAllStringSubmatch(metrics, -1) {
		name := fam[1]
		served[name] = true
		short := strings.TrimPrefix(strings.TrimPrefix(name, "ember_pyroscope_"), "ember_otlp_")
		if !strings.Contains(string(readme), "`"+name) && !strings.Contains(string(readme), "`"+short+"`") &&
			!strings.Contains(string(readme), "`"+short+"{") {
			t.Errorf("/metrics serves %s, which the README's metrics list does not name", name)
		}
	}
	for _, m := range regexp.MustCompile("`(ember_(?:kernel|tracer|bpf|memory|intervals|drains|symbolizer)_\\w+)").FindAllStringSubmatch(string(readme), -1) {
		if !served[m[1]] {
			t.Errorf("the README lists %s, which /metrics does not serve", m[1])
		}
	}
}
