package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/emberprof/ember/internal/agent"
	"github.com/emberprof/ember/internal/testutil"
)

// TestFPFallbackCountedAndMarked: a short program's first samples come
// before its unwind tables are in the kernel and are walked with frame
// pointers; each such sample is counted (unwind_fp_fallback) and marked at
// its root end, never passed off as a table walk.
func TestFPFallbackCountedAndMarked(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := testutil.BuildC(t, filepath.Join(dir, "chain"), []string{"-O2", "-g", "-fomit-frame-pointer"}, "unwind/chain.c")
	var counted, marked uint64
	for run := 0; run < 5 && counted == 0; run++ {
		out := filepath.Join(dir, "short.pb.gz")
		stderr := runEmber(t, dir, "record", "-F", "999", "--unwind", "tables", "-o", out, "--", bin, "0.05")
		p := readProfile(t, out)
		idx := testutil.SampleIndex(p, "samples")
		counted = statValue(t, stderr, "unwind_fp_fallback")
		marked = 0
		for _, s := range p.Sample {
			if strings.Contains(strings.Join(testutil.Frames(s), " <- "), agent.FPFallbackFrame) {
				marked += uint64(s.Value[idx])
			}
		}
	}
	t.Logf("unwind_fp_fallback=%d, %d samples marked %q", counted, marked, agent.FPFallbackFrame)
	if counted == 0 {
		t.Fatalf("no sample walked with frame pointers in five 0.35 s runs: the first-samples window is closed, the test no longer forces a fallback")
	}
	if marked != counted {
		t.Errorf("%d samples marked, %d counted: every fallback is both", marked, counted)
	}
}
