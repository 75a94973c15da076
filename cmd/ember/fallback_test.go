package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/emberprof/ember/internal/agent"
	"github.com/emberprof/ember/internal/testutil"
)

// TestFPFallbackCountedAndMarked: a short program's first samples come
// before its unwind tables are in the kernel; they are walked from copies of
// their stacks, and any walked with frame pointers instead (a full copy ring
// buffer) is counted (unwind_fp_fallback) and marked at its root end, never
// passed off as a table walk.
func TestFPFallbackCountedAndMarked(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := testutil.BuildC(t, filepath.Join(dir, "chain"), []string{"-O2", "-g", "-fomit-frame-pointer"}, "unwind/chain.c")
	for run := 0; run < 3; run++ {
		var counted, marked uint64
		out := filepath.Join(dir, "short.pb.gz")
		stderr := runEmber(t, dir, "record", "-F", "999", "--unwind", "tables", "-o", out, "--", bin, "0.05")
		p := readProfile(t, out)
		idx := testutil.SampleIndex(p, "samples")
		// The summary leaves out counters that are zero.
		if strings.Contains(stderr, "unwind_fp_fallback=") {
			counted = statValue(t, stderr, "unwind_fp_fallback")
		}
		marked = 0
		for _, s := range p.Sample {
			if strings.Contains(strings.Join(testutil.Frames(s), " <- "), agent.FPFallbackFrame) {
				marked += uint64(s.Value[idx])
			}
		}
		t.Logf("unwind_fp_fallback=%d, %d samples marked %q", counted, marked, agent.FPFallbackFrame)
		// The first samples are walked from copies of the stack now
		// (stackcopy.bpf.h); a frame-pointer walk is left for a full copy
		// ring buffer, and is both counted and marked.
		if marked != counted {
			t.Errorf("%d samples marked, %d counted: every fallback is both", marked, counted)
		}
	}
}
