package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"slices"
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
	return sumState(p, typ, tid, "", fn)
}

// sumState is sumWhere over samples labelled state ("" for any).
func sumState(p *profile.Profile, typ string, tid int64, state, fn string) int64 {
	idx := testutil.SampleIndex(p, typ)
	var sum int64
	for _, s := range p.Sample {
		if v := s.NumLabel["tid"]; len(v) != 1 || v[0] != tid {
			continue
		}
		if state != "" && (len(s.Label["state"]) != 1 || s.Label["state"][0] != state) {
			continue
		}
		if fn != "" && !slices.Contains(testutil.Frames(s), fn) {
			continue
		}
		sum += s.Value[idx]
	}
	return sum
}

// offCPUMethods are the --offcpu-method values every off-CPU accuracy test
// runs with: auto (task-work on this kernel) and both fallbacks, forced.
var offCPUMethods = []string{"auto", "sys-exit", "raw-tp"}

func within(t *testing.T, what string, got, want int64, tol float64) {
	t.Helper()
	if want <= 0 {
		// Nothing to compare with (0 against 0 would pass as NaN): the
		// workload did not run as it should (blocker's piper once stopped
		// at its first read).
		t.Errorf("%s: %.3fs measured, but the workload measured no time to compare with", what, float64(got)/1e9)
		return
	}
	rel := float64(got-want) / float64(want)
	t.Logf("%s: %.3fs measured, %.3fs true (%+.1f%%)", what, float64(got)/1e9, float64(want)/1e9, rel*100)
	if rel > tol || rel < -tol {
		t.Errorf("%s: off by %+.1f%%, tolerance ±%.0f%%", what, rel*100, tol*100)
	}
}

func testOffCPUBlocks(t *testing.T, migrate bool) {
	testutil.RequireRoot(t)
	for _, method := range offCPUMethods {
		t.Run(method, func(t *testing.T) {
			dir := t.TempDir()
			bin := testutil.BuildOffCPU(t, dir, "blocker")
			args := []string{bin, "6"}
			if migrate {
				args = append(args, "migrate")
			}
			stdout, p := recordCommand(t, dir, []string{"--mode", "offcpu", "--offcpu-method", method}, args...)
			truth := parseTruth(t, stdout)
			within(t, "nap_sleep off-CPU", sumWhere(p, "offcpu", truth["napper"].tid, "nap_sleep"), truth["napper"].blocked, 0.05)
			within(t, "wait_pipe off-CPU", sumWhere(p, "offcpu", truth["piper"].tid, "wait_pipe"), truth["piper"].blocked, 0.05)
		})
	}
}

// Off-CPU time attributed to each named blocking function matches the time
// the workload measured itself blocked in it, with every off-CPU method.
func TestOffCPUKnownBlocks(t *testing.T) { testOffCPUBlocks(t, false) }

// The same with threads that move to another CPU before every block: time
// must neither be lost nor inflated by migration.
func TestOffCPUKnownBlocksMigrating(t *testing.T) { testOffCPUBlocks(t, true) }

// In wall mode each thread's on-CPU plus off-CPU time is its wall time.
func TestWallAddsUp(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := testutil.BuildOffCPU(t, dir, "blocker")
	stdout, p := recordCommand(t, dir, []string{"--mode", "wall", "-F", "499"}, bin, "6")
	truth := parseTruth(t, stdout)
	for _, name := range []string{"napper", "piper", "spinner"} {
		th := truth[name]
		within(t, name+" wall", sumWhere(p, "wall", th.tid, ""), th.wall, 0.05)
	}
	// `go tool pprof -sample_index=wall` needs wall as a sample type, each
	// sample's wall its on-CPU plus off-CPU time.
	var types []string
	for _, st := range p.SampleType {
		types = append(types, st.Type+"/"+st.Unit)
	}
	if want := []string{"cpu/nanoseconds", "offcpu/nanoseconds", "wall/nanoseconds"}; !subset(want, types) {
		t.Fatalf("wall profile sample types %v, want %v among them", types, want)
	}
	cpu, off, wall := testutil.SampleIndex(p, "cpu"), testutil.SampleIndex(p, "offcpu"), testutil.SampleIndex(p, "wall")
	for _, s := range p.Sample {
		if s.Value[wall] != s.Value[cpu]+s.Value[off] {
			t.Fatalf("sample with cpu %d, offcpu %d and wall %d", s.Value[cpu], s.Value[off], s.Value[wall])
		}
	}
}

func subset(want, have []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// A whole-system off-CPU recording leaves out the idle task (swapper, which
// is "off CPU" whenever anything runs) and Ember's own threads, which block
// all the time waiting for the next drain.
func TestOffCPUExcludesIdleAndSelf(t *testing.T) {
	testutil.RequireRoot(t)
	out := filepath.Join(t.TempDir(), "out.pb.gz")
	cmd := exec.Command(emberBin(t), "record", "--mode", "wall", "-d", "3s", "-o", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ember record: %v\n%s", err, stderr.String())
	}
	p := readProfile(t, out)
	self := int64(cmd.Process.Pid)
	off := testutil.SampleIndex(p, "offcpu")
	var kept int64
	for _, s := range p.Sample {
		pid, tid := s.NumLabel["pid"], s.NumLabel["tid"]
		if len(pid) != 1 || len(tid) != 1 {
			t.Fatalf("sample without pid and tid labels: %v", s.NumLabel)
		}
		if pid[0] == self || tid[0] == 0 {
			t.Errorf("sample of pid %d tid %d (comm %v), Ember being %d: %d ns off CPU", pid[0], tid[0], s.Label["comm"], self, s.Value[off])
		}
		kept += s.Value[off]
	}
	// The machine's other threads (kernel workers, daemons) did block.
	t.Logf("%d samples, %.3fs off CPU, none of pid %d or of the idle task", len(p.Sample), float64(kept)/1e9, self)
	if kept == 0 {
		t.Errorf("no off-CPU time recorded on the whole system")
	}
}

// Many short blocks: the duration-weighted estimate of blocked time stays
// within 10% of the truth (15% with raw-tp, below). Both threads share one CPU, the classic pipe
// ping-pong: every block is a direct switch to the other thread. (Spread
// over idle CPUs of a VM, each wake-up costs an interrupt whose time the
// kernel leaves out of the thread's CPU time, so wall minus CPU time would
// no longer be the time off CPU.)
//
// Each block must also carry the user stack the thread resumed with: a
// thread sleeps in pp_read, and is preempted (runnable) on its way out of
// the write that woke the other one, never inside pp_read.
func TestOffCPUPingPong(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "taskset")
	for _, method := range offCPUMethods {
		t.Run(method, func(t *testing.T) {
			dir := t.TempDir()
			bin := testutil.BuildOffCPU(t, dir, "pingpong")
			// T = 1ms: about 5,000 kept blocks per thread, so the sampling
			// error (about 1.4%) is far inside the 10% asked.
			stdout, p := recordCommand(t, dir, []string{"--mode", "offcpu", "--offcpu-threshold", "1ms",
				"--offcpu-method", method}, "taskset", "-c", "0", bin, "5")
			truth := parseTruth(t, stdout)
			// Every write preempts the writer: without task-work its user
			// stack is taken at switch-out, and capture-sampled there (the
			// totals below hold with the sampled-out blocks left to the
			// weights of the others).
			uncaptured := statValue(t, strings.Join(p.Comments, "\n"), "offcpu_blocks_uncaptured")
			t.Logf("%d blocks not captured at switch-out", uncaptured)
			if method != "auto" && uncaptured == 0 {
				t.Errorf("no block capture-sampled at switch-out with --offcpu-method %s", method)
			}
			// raw-tp takes every block's kernel stack at switch-out
			// (1.6 us a switch, against 0.4 for sys-exit), and blocks of
			// a few microseconds carry its cache effects: the pinger read
			// 3.2-8.3% high on a72bf30 and 10.9% once in CI (Linux 6.18).
			tolerance := 0.10
			if method == "raw-tp" {
				tolerance = 0.15
			}
			for _, name := range []string{"pinger", "ponger"} {
				th := truth[name]
				within(t, name+" off-CPU (weighted)", sumWhere(p, "offcpu", th.tid, ""), th.blocked, tolerance)
				sleeping := sumState(p, "offcpu", th.tid, "sleeping", "")
				inRead := sumState(p, "offcpu", th.tid, "sleeping", "pp_read")
				runnable := sumState(p, "offcpu", th.tid, "runnable", "")
				runInRead := sumState(p, "offcpu", th.tid, "runnable", "pp_read")
				t.Logf("%s: sleeping %.3fs, %.1f%% of it in pp_read; runnable %.3fs, %.1f%% of it in pp_read", name,
					float64(sleeping)/1e9, 100*float64(inRead)/float64(sleeping),
					float64(runnable)/1e9, 100*float64(runInRead)/float64(runnable))
				if float64(inRead) < 0.95*float64(sleeping) {
					t.Errorf("%s: only %.1f%% of its sleeping time is in pp_read", name, 100*float64(inRead)/float64(sleeping))
				}
				if float64(runInRead) > 0.05*float64(runnable) {
					t.Errorf("%s: %.1f%% of its runnable time is put in pp_read: the user stack is not the one it was preempted with",
						name, 100*float64(runInRead)/float64(runnable))
				}
			}
		})
	}
}

// --offcpu-state keeps only the asked states and --offcpu-min drops blocks
// shorter than the floor, whatever their sampling weight. The blocker's
// waiter thread waits for vfork()ed children (uninterruptible, "disk"; in
// glibc's __vfork, whose return address sits in rdi), the napper sleeps in
// 10 ms naps and the piper waits about 20 ms on its pipe (both
// interruptible, "sleeping").
func TestOffCPUStateAndMin(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := testutil.BuildOffCPU(t, dir, "blocker")
	// dropped checks that at most frac of a thread's blocked time was kept.
	dropped := func(what string, got, want int64, frac float64) {
		t.Helper()
		t.Logf("%s: %.3fs kept of %.3fs blocked", what, float64(got)/1e9, float64(want)/1e9)
		if float64(got) > frac*float64(want) {
			t.Errorf("%s: %.3fs kept of its %.3fs, want at most %.0f%%", what, float64(got)/1e9, float64(want)/1e9, frac*100)
		}
	}

	t.Run("disk", func(t *testing.T) {
		stdout, p := recordCommand(t, dir, []string{"--mode", "offcpu", "--offcpu-state", "disk"}, bin, "5", "vfork")
		truth := parseTruth(t, stdout)
		waiter := truth["waiter"]
		// The whole chain: a walk that stops in __vfork loses both.
		within(t, "wait_vfork off-CPU", sumWhere(p, "offcpu", waiter.tid, "wait_vfork"), waiter.blocked, 0.05)
		within(t, "waiter off-CPU (disk)", sumState(p, "offcpu", waiter.tid, "disk", "waiter"), waiter.blocked, 0.05)
		// The state filter is exact.
		dropped("napper, sleeping", sumWhere(p, "offcpu", truth["napper"].tid, ""), truth["napper"].blocked, 0.01)
		dropped("piper, sleeping", sumWhere(p, "offcpu", truth["piper"].tid, ""), truth["piper"].blocked, 0.01)
	})
	t.Run("sleep-disk-min-15ms", func(t *testing.T) {
		stdout, p := recordCommand(t, dir, []string{"--mode", "offcpu", "--offcpu-state", "sleep,disk", "--offcpu-min", "15ms"},
			bin, "5", "vfork")
		truth := parseTruth(t, stdout)
		// The waiter's blocks last at least its child's 20 ms sleep, however
		// late it runs again: all kept.
		within(t, "wait_vfork off-CPU (20 ms blocks)", sumWhere(p, "offcpu", truth["waiter"].tid, "wait_vfork"),
			truth["waiter"].blocked, 0.05)
		// A block lasts from switch-out to switch-in: a nap whose wake-up
		// waits 5 ms for a CPU is a 15 ms block, which happened to 6% of
		// the naps in one CI run. Without the floor all are kept.
		dropped("napper, 10 ms naps", sumWhere(p, "offcpu", truth["napper"].tid, ""), truth["napper"].blocked, 0.25)
		// The piper's waits are 20 ms less its own lateness: most are kept.
		if got, want := sumState(p, "offcpu", truth["piper"].tid, "sleeping", "wait_pipe"), truth["piper"].blocked; got < want/2 {
			t.Errorf("piper: %.3fs kept of %.3fs blocked in wait_pipe: sleeping blocks are dropped", float64(got)/1e9, float64(want)/1e9)
		}
	})
}
