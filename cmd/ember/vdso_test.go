package main

import (
	"bytes"
	"debug/elf"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/symbolize/objfile"
)

// TestVDSOFramesNamed: a clock_gettime loop spends its time in the vDSO,
// whose frames are named from the kernel's image (__vdso_clock_gettime, as
// perf names it) and walked with its .eh_frame back to main. The shares are
// over the samples with a frame in the [vdso] mapping.
//
// A frame in vDSO code that the kernel's image names no function for (with
// clocksource=kvm-clock, clock_gettime's time is spent in vread_pvclock, a
// local function of 144 bytes that the stripped image has no symbol for, and
// perf shows [unknown]) cannot be named from the image; such frames are
// counted apart, found with debug/elf's reading of the same image, and the
// walk through them to main is still required.
func TestVDSOFramesNamed(t *testing.T) {
	testutil.RequireRoot(t)
	funcs := vdsoFunctions(t)
	dir := t.TempDir()
	bin := testutil.BuildC(t, filepath.Join(dir, "vdsoloop"), []string{"-O2", "-g", "-fomit-frame-pointer"}, "unwind/vdsoloop.c")
	p, _ := recordChain(t, dir, bin, "tables", 3)
	idx := testutil.SampleIndex(p, "samples")
	chain := []string{"tick", "level2", "level1", "main"}
	var inVDSO, named, whole, unnamable int64
	shown := 0
	for _, s := range p.Sample {
		in, allNamed, nameless := false, true, false
		for _, l := range s.Location {
			if l.Mapping == nil || l.Mapping.File != "[vdso]" {
				continue
			}
			in = true
			if !funcs.covers(l.Address - l.Mapping.Start + l.Mapping.Offset) {
				nameless = true
				continue
			}
			if len(l.Line) == 0 || l.Line[0].Function == nil || !strings.HasPrefix(l.Line[0].Function.Name, "__vdso_") && !isVDSOInternal(l.Line[0].Function.Name) {
				allNamed = false
			}
		}
		if !in {
			continue
		}
		v := s.Value[idx]
		inVDSO += v
		if nameless {
			unnamable += v
		}
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
	t.Logf("vDSO frames named in %.2f%% of %d samples in the vDSO; named and walked to main (%s) in %.2f%%; "+
		"%.2f%% with a frame in code the kernel's image names no function for",
		100*float64(named)/float64(inVDSO), inVDSO, strings.Join(chain, " <- "), 100*float64(whole)/float64(inVDSO),
		100*float64(unnamable)/float64(inVDSO))
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

// vdsoRanges are the [start, end) offsets of the functions the vDSO image's
// dynamic symbol table names.
type vdsoRanges [][2]uint64

func (r vdsoRanges) covers(off uint64) bool {
	for _, f := range r {
		if off >= f[0] && off < f[1] {
			return true
		}
	}
	return false
}

// vdsoFunctions reads the kernel's vDSO image from the test's own process
// (every process maps the same one) with debug/elf, not with Ember's
// symbolizer.
func vdsoFunctions(t *testing.T) vdsoRanges {
	t.Helper()
	b, err := objfile.ReadOwnVDSO()
	if err != nil {
		t.Fatalf("reading the vDSO: %v", err)
	}
	ef, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parsing the vDSO: %v", err)
	}
	syms, err := ef.DynamicSymbols()
	if err != nil {
		t.Fatalf("the vDSO's symbols: %v", err)
	}
	var r vdsoRanges
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 {
			r = append(r, [2]uint64{s.Value, s.Value + s.Size})
		}
	}
	if len(r) == 0 {
		t.Fatal("the vDSO image names no function")
	}
	return r
}
