package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/emberprof/ember/internal/testutil"
)

// TestVDSOFramesNamed: a clock_gettime loop spends its time in the vDSO,
// whose frames are named from the kernel's image (__vdso_clock_gettime, as
// perf names it) and walked with its .eh_frame back to main. The shares are
// over the samples with a frame in the [vdso] mapping.
func TestVDSOFramesNamed(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := testutil.BuildC(t, filepath.Join(dir, "vdsoloop"), []string{"-O2", "-g", "-fomit-frame-pointer"}, "unwind/vdsoloop.c")
	p, _ := recordChain(t, dir, bin, "tables", 3)
	idx := testutil.SampleIndex(p, "samples")
	chain := []string{"tick", "level2", "level1", "main"}
	var inVDSO, named, whole int64
	shown := 0
	for _, s := range p.Sample {
		in, allNamed := false, true
		for _, l := range s.Location {
			if l.Mapping == nil || l.Mapping.File != "[vdso]" {
				continue
			}
			in = true
			if len(l.Line) == 0 || l.Line[0].Function == nil || !strings.HasPrefix(l.Line[0].Function.Name, "__vdso_") && !isVDSOInternal(l.Line[0].Function.Name) {
				allNamed = false
			}
		}
		if !in {
			continue
		}
		v := s.Value[idx]
		inVDSO += v
		if allNamed {
			named += v
		}
		frames := testutil.Frames(s)
		if ok, _ := hasChain(frames, chain); ok && allNamed {
			whole += v
		} else if shown < 3 {
			shown++
			t.Logf("incomplete: %s", strings.Join(frames, " <- "))
		}
	}
	if inVDSO < 300 {
		t.Fatalf("%d samples in the vDSO; want 300 for a 1%% tolerance", inVDSO)
	}
	t.Logf("vDSO frames named in %.2f%% of %d samples in the vDSO; named and walked to main (%s) in %.2f%%",
		100*float64(named)/float64(inVDSO), inVDSO, strings.Join(chain, " <- "), 100*float64(whole)/float64(inVDSO))
	if float64(named) < 0.99*float64(inVDSO) {
		t.Errorf("vDSO frames named in %d of %d samples, want >= 99%%", named, inVDSO)
	}
	if float64(whole) < 0.99*float64(inVDSO) {
		logIncomplete(t, p, chain)
		t.Errorf("vDSO samples with the whole chain: %d of %d, want >= 99%%", whole, inVDSO)
	}
}

// isVDSOInternal: the vDSO's local helpers that its symbol table names (an
// x86 kernel's vdso64.so exports __vdso_* and keeps no local symbols, but
// other architectures' images name __kernel_* or __cvdso_* functions).
func isVDSOInternal(name string) bool {
	return strings.HasPrefix(name, "__kernel_") || strings.HasPrefix(name, "__cvdso_")
}
