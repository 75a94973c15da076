package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/internal/testutil"
)

// threadTruth is one "thread NAME TID WALL_NS CPU_NS BLOCKED_NS" line of
// testdata/offcpu workloads.
type threadTruth struct {
	tid                int64
	wall, cpu, blocked int64
}

func parseTruth(t *testing.T, out string) map[string]threadTruth {
	t.Helper()
	truth := map[string]threadTruth{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 6 || f[0] != "thread" {
			continue
		}
		var v [4]int64
		for i := range v {
			v[i], _ = strconv.ParseInt(f[2+i], 10, 64)
		}
		truth[f[1]] = threadTruth{tid: v[0], wall: v[1], cpu: v[2], blocked: v[3]}
	}
	if len(truth) == 0 {
		t.Fatalf("workload printed no truth:\n%s", out)
	}
	return truth
}

// buildOffCPU builds a testdata/offcpu workload with frame pointers kept
// everywhere they can be (clang, leaves included, no sibling calls).
func buildOffCPU(t *testing.T, dir, name string) string {
	return testutil.BuildCC(t, "clang-19", filepath.Join(dir, name),
		[]string{"-O2", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-fno-optimize-sibling-calls", "-pthread"},
		"offcpu/"+name+".c")
}

// recordCommand runs `ember record ARGS -- COMMAND` and returns the
// command's stdout and the profile.
func recordCommand(t *testing.T, dir string, args []string, command ...string) (string, *profile.Profile) {
	t.Helper()
	out := filepath.Join(dir, "out.pb.gz")
	full := append(append([]string{"record", "-o", out}, args...), "--")
	full = append(full, command...)
	cmd := exec.Command(emberBin(t), full...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ember %v: %v\n%s", full, err, stderr.String())
	}
	t.Logf("ember %s:\n%s", strings.Join(full, " "), stderr.String())
	return stdout.String(), readProfile(t, out)
}

// sumWhere sums sample value typ over samples of tid whose stack has fn
// ("" for any).
func sumWhere(p *profile.Profile, typ string, tid int64, fn string) int64 {
	idx := testutil.SampleIndex(p, typ)
	var sum int64
	for _, s := range p.Sample {
		if v := s.NumLabel["tid"]; len(v) != 1 || v[0] != tid {
			continue
		}
		if fn != "" {
			found := false
			for _, f := range testutil.Frames(s) {
				if f == fn {
					found = true
					break
				}
			}
			if !found {
				continue
			}
		}
		sum += s.Value[idx]
	}
	return sum
}

func within(t *testing.T, what string, got, want int64, tol float64) {
	t.Helper()
	rel := float64(got-want) / float64(want)
	t.Logf("%s: %.3fs measured, %.3fs true (%+.1f%%)", what, float64(got)/1e9, float64(want)/1e9, rel*100)
	if rel > tol || rel < -tol {
		t.Errorf("%s: off by %+.1f%%, tolerance ±%.0f%%", what, rel*100, tol*100)
	}
}

func testOffCPUBlocks(t *testing.T, migrate bool) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := buildOffCPU(t, dir, "blocker")
	args := []string{bin, "6"}
	if migrate {
		args = append(args, "migrate")
	}
	stdout, p := recordCommand(t, dir, []string{"--mode", "offcpu"}, args...)
	truth := parseTruth(t, stdout)
	within(t, "nap_sleep off-CPU", sumWhere(p, "offcpu", truth["napper"].tid, "nap_sleep"), truth["napper"].blocked, 0.05)
	within(t, "wait_pipe off-CPU", sumWhere(p, "offcpu", truth["piper"].tid, "wait_pipe"), truth["piper"].blocked, 0.05)
}

// Off-CPU time attributed to each named blocking function matches the time
// the workload measured itself blocked in it.
func TestOffCPUKnownBlocks(t *testing.T) { testOffCPUBlocks(t, false) }

// The same with threads that move to another CPU before every block: time
// must neither be lost nor inflated by migration.
func TestOffCPUKnownBlocksMigrating(t *testing.T) { testOffCPUBlocks(t, true) }

// In wall mode each thread's on-CPU plus off-CPU time is its wall time.
func TestWallAddsUp(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := buildOffCPU(t, dir, "blocker")
	stdout, p := recordCommand(t, dir, []string{"--mode", "wall", "-F", "499"}, bin, "6")
	truth := parseTruth(t, stdout)
	for _, name := range []string{"napper", "piper", "spinner"} {
		th := truth[name]
		within(t, name+" wall", sumWhere(p, "wall", th.tid, ""), th.wall, 0.05)
	}
}

// Many short blocks: the duration-weighted estimate of blocked time stays
// within 10% of the truth. Both threads share one CPU, the classic pipe
// ping-pong: every block is a direct switch to the other thread. (Spread
// over idle CPUs of a VM, each wake-up costs an interrupt whose time the
// kernel leaves out of the thread's CPU time, so wall minus CPU time would
// no longer be the time off CPU.)
func TestOffCPUPingPong(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "taskset")
	dir := t.TempDir()
	bin := buildOffCPU(t, dir, "pingpong")
	stdout, p := recordCommand(t, dir, []string{"--mode", "offcpu"}, "taskset", "-c", "0", bin, "5")
	truth := parseTruth(t, stdout)
	for _, name := range []string{"pinger", "ponger"} {
		th := truth[name]
		within(t, name+" off-CPU (weighted)", sumWhere(p, "offcpu", th.tid, ""), th.blocked, 0.10)
		t.Logf("%s: %.3fs of it blocked in pp_read", name, float64(sumWhere(p, "offcpu", th.tid, "pp_read"))/1e9)
	}
}
