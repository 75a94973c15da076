package unwind

import (
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
			"sp %d, fp %d, plt %d, expression %d, other-register %d, bad-rule %d",
			path, tab.Stats.FDEs, rows, unsupported, 100*rowShare, 100*codeShare,
			tab.Stats.Kinds[CFASP], tab.Stats.Kinds[CFAFP], tab.Stats.Kinds[CFAPLT],
			tab.Stats.Kinds[CFAExpression], tab.Stats.Kinds[CFAOtherReg], tab.Stats.Kinds[CFABadRule])
		// Compilers emit expressions only for PLTs, signal trampolines and
		// stack realignment: more than 2% means rules are being lost.
		if rowShare > 0.02 {
			t.Errorf("%s: %.2f%% of rows unsupported", path, 100*rowShare)
		}
	}
}
