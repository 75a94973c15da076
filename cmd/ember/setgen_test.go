package main

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/emberprof/ember/internal/testutil"
)

// TestOffCPUStackAcrossTwoFlips: without task_work, a preempted thread's
// user stack is stored when it is switched out, and the block is counted
// when it runs again. A SCHED_IDLE thread sharing a CPU waits about a second
// at a time, across 500 ms drains. With the 1-bit set index, a wait across
// two flips found the index equal again and its stack looked up in a map
// cleared in between: lost (drain_stack_lookup_failed; before that was
// counted, silently "no stack"). With the set generation every wait across a
// flip is known stale: counted as offcpu_stack_stale and marked
// "[user stack lost: taken before a drain]".
func TestOffCPUStackAcrossTwoFlips(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := testutil.BuildC(t, filepath.Join(dir, "starved"), []string{"-O2", "-g"}, "offcpu/starved.c")
	out := filepath.Join(dir, "starved.pb.gz")
	runEmber(t, dir, "record", "--mode", "offcpu", "--offcpu-state", "runnable", "--offcpu-method", "sys-exit", "-o", out, "--", bin, "6")
	p := readProfile(t, out)
	// The profile's comments carry every counter, zeros included (the
	// summary leaves zeros out).
	comments := strings.Join(p.Comments, "\n")
	stale, failed := statValue(t, comments, "offcpu_stack_stale"), statValue(t, comments, "drain_stack_lookup_failed")
	idx := testutil.SampleIndex(p, "offcpu")
	var long, marked int64
	for _, s := range p.Sample {
		if s.Value[idx] < 600e6 { // waits longer than a drain interval
			continue
		}
		long++
		if strings.Contains(strings.Join(testutil.Frames(s), " <- "), "[user stack lost: taken before a drain]") {
			marked++
		}
	}
	t.Logf("offcpu_stack_stale=%d drain_stack_lookup_failed=%d; %d samples of waits over 600 ms, %d marked stale", stale, failed, long, marked)
	if long == 0 {
		t.Fatalf("no preempted wait over 600 ms: the workload did not starve its idle-class thread")
	}
	if failed != 0 {
		t.Errorf("drain_stack_lookup_failed=%d: a stack stored two flips earlier was looked up in a cleared map", failed)
	}
	if stale == 0 || marked == 0 {
		t.Errorf("offcpu_stack_stale=%d, %d samples marked stale: waits across a drain must be", stale, marked)
	}
}

// statValue reads one counter from record's summary ("name=value").
func statValue(t *testing.T, text, name string) uint64 {
	t.Helper()
	m := regexp.MustCompile(`\b` + name + `=(\d+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no %s in:\n%s", name, text)
	}
	v, _ := strconv.ParseUint(m[1], 10, 64)
	return v
}
