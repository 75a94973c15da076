package unwind

import (
	"debug/elf"
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
)

// TestUnsupportedShare reports, for libc and the binaries of this machine
// with the largest .eh_frame, how much of the table is rows an unwinder must
// stop at (expressions it does not compile, other CFA registers, rules the
// format cannot hold). Run with -v to see the numbers.
func TestUnsupportedShare(t *testing.T) {
	paths := []string{libcPath(t)}
	n := 5
	if testing.Short() {
		n = 1
	}
	for _, c := range largestBinaries(t, n) {
		paths = append(paths, c.path)
	}
	for _, path := range paths {
		tab, err := Open(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		var rows, unsupported int
		var code, unsupportedCode uint64
		for k := CFAKind(1); k < CFAKind(len(cfaKindNames)); k++ {
			rows += tab.Stats.Kinds[k]
			code += tab.Stats.KindBytes[k]
			if !k.Supported() {
				unsupported += tab.Stats.Kinds[k]
				unsupportedCode += tab.Stats.KindBytes[k]
			}
		}
		rowShare := float64(unsupported) / float64(max(rows, 1))
		codeShare := float64(unsupportedCode) / float64(max(code, 1))
		t.Logf("%s: %d FDEs, %d rows; unsupported %d rows (%.3f%%) covering %.3f%% of described code; "+
			"sp %d, fp %d, plt %d, deref-fp %d, expression %d, other-register %d, bad-rule %d, invalid %d",
			path, tab.Stats.FDEs, rows, unsupported, 100*rowShare, 100*codeShare,
			tab.Stats.Kinds[CFASP], tab.Stats.Kinds[CFAFP], tab.Stats.Kinds[CFAPLT], tab.Stats.Kinds[CFADerefFP],
			tab.Stats.Kinds[CFAExpression], tab.Stats.Kinds[CFAOtherReg], tab.Stats.Kinds[CFABadRule], tab.Stats.Kinds[CFAInvalid])
		// Compilers emit expressions only for PLTs, signal trampolines and
		// stack realignment: more than 2% means rules are being lost.
		if rowShare > 0.02 {
			t.Errorf("%s: %.2f%% of rows unsupported", path, 100*rowShare)
		}
	}
}

// TestAllBinaries builds the table of every ELF file under the usual
// binary directories: none may fail or have an undecodable FDE. It reports
// the share of unsupported rows over all of them.
func TestAllBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("reads every binary of the machine; skipped in -short")
	}
	var built, noInfo, otherArch int
	var rows, unsupported int
	seen := map[string]bool{}
	for _, root := range []string{"/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec", "/usr/local/go/pkg/tool"} {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			real, err := filepath.EvalSymlinks(path)
			if err != nil || seen[real] {
				return nil
			}
			seen[real] = true
			f, err := elf.Open(real)
			if err != nil {
				return nil // not ELF
			}
			defer f.Close()
			tab, err := NewTable(f)
			switch {
			case errors.Is(err, ErrNoFrameInfo):
				noInfo++
				return nil
			case errors.Is(err, ErrUnsupportedArch):
				otherArch++
				return nil
			case err != nil:
				t.Errorf("%s: %v", real, err)
				return nil
			}
			built++
			if tab.Stats.BadFDEs > 0 {
				t.Errorf("%s: %d undecodable FDEs: %v", real, tab.Stats.BadFDEs, tab.Errors)
			}
			for k, n := range tab.Stats.Kinds {
				if CFAKind(k) == CFANone {
					continue
				}
				rows += n
				if !CFAKind(k).Supported() {
					unsupported += n
				}
			}
			return nil
		})
	}
	t.Logf("%d tables built (%d rows, %d unsupported: %.3f%%), %d files without frame information, %d of other architectures",
		built, rows, unsupported, 100*float64(unsupported)/float64(max(rows, 1)), noInfo, otherArch)
	if built == 0 {
		t.Error("no binary found")
	}
}
