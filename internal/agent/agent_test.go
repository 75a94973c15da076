package agent

import (
	"bufio"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/export/pyroscope"
	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/internal/testutil/pyroscopetest"
)

// The agent ships, on schedule, a CPU and an off-CPU profile per service to a
// server speaking Pyroscope's push API; they decode, carry the expected
// labels, and add up to what the workload did. Cancelling mid-interval still
// delivers the last partial interval.
func TestAgentPushesToPyroscope(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := testutil.BuildOffCPU(t, dir, "blocker")
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	defer srv.Close()
	s, err := pyroscope.New(pyroscope.Config{URL: srv.URL, Labels: map[string]string{"hostname": "testhost", "env": "ci"}, MinBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// The workload waits in a shell until the agent has started, then execs
	// into the same PID: its 5 s all fall in the agent's intervals however
	// long loading takes (seconds on a busy machine, where a kernel's
	// verifier refuses the first off-CPU method and auto falls back).
	w := exec.Command("sh", "-c", `read _ && exec "$0" 5`, bin)
	out, _ := w.StdoutPipe()
	release, _ := w.StdinPipe()
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	a, err := Start(Config{
		Tracer:   tracerConfig(w.Process.Pid),
		Mode:     pprof.ModeWall,
		Interval: 2 * time.Second,
		Sink:     s,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- a.Run(ctx) }()
	if _, err := release.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	truth := map[string][3]int64{} // wall, cpu, blocked by thread name
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 6 {
			var v [3]int64
			for i := range v {
				v[i], _ = strconv.ParseInt(f[3+i], 10, 64)
			}
			truth[f[1]] = v
		}
	}
	w.Wait()
	time.Sleep(300 * time.Millisecond) // mid-interval: 5.3 s into 2 s intervals
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	series := srv.Series()
	var cpuNS, offNS int64
	times := map[string][]time.Time{}
	for _, ser := range series {
		name, svc := ser.Labels["__name__"], ser.Labels["service_name"]
		t.Logf("%s %s at +%.1fs: %d samples, labels %v", name, svc, ser.Time.Sub(start).Seconds(), len(ser.Profile.Sample), ser.Labels)
		if ser.Labels["hostname"] != "testhost" || ser.Labels["env"] != "ci" {
			t.Errorf("series lacks static labels: %v", ser.Labels)
		}
		if svc != "blocker" {
			t.Errorf("service_name %q, want blocker", svc)
		}
		times[name] = append(times[name], ser.Time)
		switch name {
		case "process_cpu":
			cpuNS += pyroscopetest.Total(ser.Profile, "cpu")
		case "offcpu":
			offNS += pyroscopetest.Total(ser.Profile, "offcpu")
			checkOffCPUOnly(t, ser.Profile)
		default:
			t.Errorf("unexpected profile name %q", name)
		}
	}
	// 2 s intervals over ~5.3 s: two full intervals and the partial last one.
	for _, name := range []string{"process_cpu", "offcpu"} {
		if n := len(times[name]); n != 3 {
			t.Errorf("%d %s profiles in %.1fs of 2s intervals, want 3 (two full and the last partial)", n, name, elapsed.Seconds())
		}
	}
	wantCPU := truth["spinner"][1] + truth["napper"][1] + truth["piper"][1]
	wantOff := truth["napper"][2] + truth["piper"][2]
	t.Logf("cpu %.2fs shipped vs %.2fs measured by the threads; offcpu %.2fs shipped vs >= %.2fs blocked in the named calls", float64(cpuNS)/1e9, float64(wantCPU)/1e9, float64(offNS)/1e9, float64(wantOff)/1e9)
	if rel := float64(cpuNS-wantCPU) / float64(wantCPU); rel > 0.1 || rel < -0.1 {
		t.Errorf("shipped CPU time off by %+.0f%%", rel*100)
	}
	if offNS < wantOff*95/100 {
		t.Errorf("shipped off-CPU time %.2fs, want at least %.2fs", float64(offNS)/1e9, float64(wantOff)/1e9)
	}
}

func checkOffCPUOnly(t *testing.T, p *profile.Profile) {
	t.Helper()
	if len(p.SampleType) != 1 || p.SampleType[0].Type != "offcpu" {
		t.Errorf("off-CPU profile sample types %v", p.SampleType)
	}
}
