package agent

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/internal/tracer"
)

// Where pid_max is above 2^20 the hot per-thread off-CPU records live in
// task storage instead of the array indexed by thread ID. This machine's
// pid_max is small, so the test forces that layout and checks it measures
// what the array does: napper's time in nap_sleep over a 4 s recording of a
// running blocker, against the share of its run napper says it slept.
func TestOffCPUHotRecordsInTaskStorage(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := testutil.BuildOffCPU(t, dir, "blocker")
	var stdout bytes.Buffer
	work := exec.Command(bin, "7")
	work.Stdout = &stdout
	if err := work.Start(); err != nil {
		t.Fatal(err)
	}
	defer work.Process.Kill()
	time.Sleep(500 * time.Millisecond)

	cfg := RecordConfig{Mode: pprof.ModeOffCPU, Duration: 4 * time.Second, Outputs: []string{filepath.Join(dir, "out.pb.gz")}}
	cfg.Tracer = tracer.Config{PIDs: []int{work.Process.Pid}, OffCPUThreshold: time.Millisecond, OffCPUHotInStorage: true}
	sum, err := Record(context.Background(), cfg)
	if err != nil {
		testutil.SkipOrFail(t, "record: %v", err)
	}
	if err := work.Wait(); err != nil {
		t.Fatalf("blocker: %v", err)
	}

	var tid, wall, blocked int64
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 6 && f[0] == "thread" && f[1] == "napper" {
			tid, _ = strconv.ParseInt(f[2], 10, 64)
			wall, _ = strconv.ParseInt(f[3], 10, 64)
			blocked, _ = strconv.ParseInt(f[5], 10, 64)
		}
	}
	if tid == 0 || wall == 0 {
		t.Fatalf("no napper line in blocker's output:\n%s", stdout.String())
	}
	p := sum.Profile
	idx := testutil.SampleIndex(p, "offcpu")
	var got int64
	for _, s := range p.Sample {
		if v := s.NumLabel["tid"]; len(v) == 1 && v[0] == tid && slices.Contains(testutil.Frames(s), "nap_sleep") {
			got += s.Value[idx]
		}
	}
	want := float64(blocked) / float64(wall) * float64(p.DurationNanos)
	rel := (float64(got) - want) / want
	t.Logf("nap_sleep: %.3fs measured in a %.3fs recording, %.3fs expected (%+.1f%%)",
		float64(got)/1e9, float64(p.DurationNanos)/1e9, want/1e9, rel*100)
	if rel > 0.05 || rel < -0.05 {
		t.Errorf("nap_sleep off by %+.1f%%, tolerance ±5%%", rel*100)
	}
}
