package main

import (
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

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/internal/testutil/pyroscopereal"
)

// Profile types as the real server names them.
const (
	realCPUType    = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
	realOffCPUType = "offcpu:offcpu:nanoseconds:offcpu:nanoseconds"
)

// The agent against the real Pyroscope server from ../shared: CPU lands as
// process_cpu and off-CPU as offcpu, per service, with each workload's hot
// functions in SelectMergeStacktraces. Then the server is stopped for 60 s
// and restarted (it takes another 45-100 s to be ready): the profiles of
// the outage arrive after it, nothing is lost (the server's totals for the
// whole run equal those of the same profiles written by the file sink
// beside it), and SIGTERM after the recovery exits 0 with nothing
// undelivered.
func TestAgentRealPyroscopeOutage(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("a 60 s outage of a real server")
	}
	srv := pyroscopereal.Start(t)
	dir := t.TempDir()
	cpuBin := buildCPUSplit(t, dir)
	offBin := testutil.BuildOffCPU(t, dir, "blocker")
	var pids []string
	for _, bin := range []string{cpuBin, offBin} {
		w := exec.Command(bin, "600")
		w.Stdout = io.Discard
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { w.Process.Kill(); w.Wait() }()
		pids = append(pids, "--pid", strconv.Itoa(w.Process.Pid))
	}
	files := filepath.Join(dir, "profiles")
	agent, stderr := startAgent(t, append([]string{"--pyroscope-url", srv.URL, "--output-dir", files, "--interval", "5s",
		"--mode", "wall", "--metrics-addr", "127.0.0.1:0", "--shutdown-timeout", "20s"}, pids...)...)
	begin := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, c := range []struct{ typ, svc, frame string }{
		{realCPUType, "cpusplit", "work_a"}, {realCPUType, "cpusplit", "spin"},
		{realOffCPUType, "blocker", "napper"},
	} {
		fg, err := srv.WaitFor(ctx, c.typ, `{service_name="`+c.svc+`"}`, c.frame, begin.Add(-time.Minute), time.Now().Add(time.Minute))
		if err != nil {
			t.Fatalf("before the outage: %v\nagent:\n%s", err, stderr.String())
		}
		t.Logf("%s of %s has %s: total %d", c.typ, c.svc, c.frame, fg.Total)
	}

	down := time.Now()
	srv.Stop()
	t.Logf("server stopped at +%.0fs", down.Sub(begin).Seconds())
	time.Sleep(60 * time.Second)
	srv.Restart(t)
	ready := time.Now()
	t.Logf("server ready again at +%.0fs, %.0fs after it stopped", ready.Sub(begin).Seconds(), ready.Sub(down).Seconds())

	// The outage's profiles (time stamps in [down, down+60s)) arrive.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel2()
	outageEnd := down.Add(60 * time.Second)
	if _, err := srv.WaitFor(ctx2, realCPUType, `{service_name="cpusplit"}`, "work_a", down, outageEnd); err != nil {
		t.Fatalf("the outage's profiles did not arrive: %v\nagent:\n%.6000s", err, stderr.String())
	}
	t.Logf("the outage's CPU profiles were queryable %.1fs after the server was ready", time.Since(ready).Seconds())
	time.Sleep(10 * time.Second) // the last batches
	metrics := scrape(t, stderr.String())

	agent.Process.Signal(syscall.SIGTERM)
	if err := agent.Wait(); err != nil {
		t.Fatalf("agent exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	end := time.Now()
	if strings.Contains(stderr.String(), "not delivered") {
		t.Errorf("the agent reports profiles not delivered:\n%s", stderr.String())
	}
	for _, m := range []string{`ember_pyroscope_profiles_dropped_total{reason="queue_full"}`, `ember_pyroscope_profiles_dropped_total{reason="too_old"}`,
		`ember_pyroscope_profiles_dropped_total{reason="rejected"}`, `ember_intervals_dropped_total{stage="symbolize"}`, `ember_intervals_dropped_total{stage="ship"}`} {
		if v := metricValue(metrics, m); v != 0 {
			t.Errorf("%s = %v", m, v)
		}
	}
	t.Logf("sent %v profiles in %v push attempts; failed attempts: %v", metricValue(metrics, "ember_pyroscope_profiles_sent_total"),
		metricValue(metrics, "ember_pyroscope_upload_attempts_total"), failedAttempts(metrics))

	// Nothing lost: per type and service, what the server has for the whole
	// run and for the outage equals what the file sink wrote.
	for _, c := range []struct{ typ, svc, sampleType string }{
		{realCPUType, "cpusplit", "cpu"}, {realOffCPUType, "blocker", "offcpu"}, {realCPUType, "blocker", "cpu"},
	} {
		wantAll := fileTotal(t, files, c.svc, c.sampleType, time.Time{}, end)
		wantOut := fileTotal(t, files, c.svc, c.sampleType, down, outageEnd)
		var gotAll, gotOut int64
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
			gotAll = queryTotal(t, srv, c.typ, c.svc, begin.Add(-time.Minute), end.Add(time.Minute))
			gotOut = queryTotal(t, srv, c.typ, c.svc, down, outageEnd)
			if gotAll == wantAll && gotOut == wantOut {
				break
			}
		}
		t.Logf("%s %s: whole run %d ns on the server, %d in the files; outage minute %d on the server, %d in the files",
			c.typ, c.svc, gotAll, wantAll, gotOut, wantOut)
		if wantOut == 0 || gotAll != wantAll || gotOut != wantOut {
			t.Errorf("%s of %s: the server has %d (outage %d), the files %d (outage %d)", c.typ, c.svc, gotAll, gotOut, wantAll, wantOut)
		}
	}
}

// queryTotal returns the server's total of profileType for service between
// start and end.
func queryTotal(t *testing.T, srv *pyroscopereal.Server, profileType, service string, start, end time.Time) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fg, err := srv.Query(ctx, profileType, `{service_name="`+service+`"}`, start, end)
	if err != nil {
		t.Fatal(err)
	}
	return fg.Total
}

// fileTotal sums sample type typ over the file sink's profiles of service
// whose time stamp (the interval's start, where Pyroscope files it) is in
// [start, end).
func fileTotal(t *testing.T, dir, service, typ string, start, end time.Time) int64 {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*_"+service+"_*.pb.gz"))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		p, err := profile.Parse(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ts := time.Unix(0, p.TimeNanos)
		if ts.Before(start) || !ts.Before(end) {
			continue
		}
		for i, st := range p.SampleType {
			if st.Type != typ {
				continue
			}
			for _, s := range p.Sample {
				total += s.Value[i]
			}
		}
	}
	return total
}

// scrape returns the agent's /metrics at the address it logged.
func scrape(t *testing.T, log string) string {
	t.Helper()
	m := regexp.MustCompile(`msg="serving metrics" addr=(\S+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("agent did not log its metrics address:\n%s", log)
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue returns the value of the sample named exactly name (with its
// labels) in a Prometheus text exposition, or -1 if absent.
func metricValue(metrics, name string) float64 {
	for _, line := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return -1
}

func failedAttempts(metrics string) string {
	var out []string
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "ember_pyroscope_upload_failures_total") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "; ")
}
