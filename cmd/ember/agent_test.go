package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
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

func rssKiB(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
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
	agent, _ := startAgent(t, "--pyroscope-url", srv.URL, "--interval", "60s", "-F", "99", "--pid", strconv.Itoa(w.Process.Pid))
	time.Sleep(4 * time.Second)
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
	agent, stderr := startAgent(t, "--pyroscope-url", srv.URL, "--interval", "5s", "-F", "99", "--mode", "wall")
	churn := func(d time.Duration) int {
		n := 0
		for end := time.Now().Add(d); time.Now().Before(end); n++ {
			// Each process spins for 10 ms: long enough to be sampled now
			// and then, so the agent reads and forgets many processes.
			c := exec.Command(bin, "0.01")
			if err := c.Run(); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	churn(time.Duration(envSeconds("EMBER_CHURN_WARMUP", 15)) * time.Second) // warm-up: caches, maps and the Go heap settle
	warm := rssKiB(t, agent.Process.Pid)
	n := churn(time.Duration(envSeconds("EMBER_CHURN_SECONDS", 60)) * time.Second)
	time.Sleep(6 * time.Second) // one more interval
	end := rssKiB(t, agent.Process.Pid)
	t.Logf("%d processes in 60s; agent RSS %d KiB after warm-up, %d KiB at the end (%+.1f%%); %d profiles received",
		n, warm, end, 100*float64(end-warm)/float64(warm), len(srv.Series()))
	reqs := srv.Requests()
	for i, r := range reqs {
		if i < 5 || r.Status != 200 {
			t.Logf("request %d: %s %d %s", i, r.Path, r.Status, r.Error)
		}
		if i > 20 {
			break
		}
	}
	if n < 1000 {
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
