package folded

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/emberprof/ember/export/stacks"
	"github.com/google/pprof/profile"
)

// DiffOptions control WriteDiff.
type DiffOptions struct {
	Options
	// NoNormalize writes raw base counts; by default they are scaled so that
	// the base total equals the new total.
	NoNormalize bool
}

// WriteDiff writes the stacks of base and new in the two-column folded form
// of flamegraph.pl's difffolded.pl ("stack base new"), which flamegraph.pl
// and inferno draw as a differential flame graph. Both profiles are read
// with the sample type opts.SampleType selects in new.
func WriteDiff(w io.Writer, base, newer *profile.Profile, opts DiffOptions) error {
	sopts := stacks.Options{ProcessRoot: opts.ProcessRoot}
	ns, err := stacks.FromProfile(newer, sopts)
	if err != nil {
		return fmt.Errorf("folded: new: %w", err)
	}
	ni, err := ns.Index(opts.SampleType)
	if err != nil {
		return fmt.Errorf("folded: new: %w", err)
	}
	bs, err := stacks.FromProfile(base, sopts)
	if err != nil {
		return fmt.Errorf("folded: base: %w", err)
	}
	bi, err := bs.Index(ns.Types[ni].Type + "/" + ns.Types[ni].Unit)
	if err != nil {
		return fmt.Errorf("folded: base: %w", err)
	}
	scale := 1.0
	if bt := bs.Total(bi); !opts.NoNormalize && bt > 0 {
		scale = float64(ns.Total(ni)) / float64(bt)
	}
	counts := map[string]*[2]int64{}
	collect := func(set *stacks.Set, index, col int, scale float64) {
		eachLine(set, index, opts.KernelSuffix, func(line string, v int64) {
			c := counts[line]
			if c == nil {
				c = &[2]int64{}
				counts[line] = c
			}
			c[col] += v
		})
		if scale != 1 {
			for _, c := range counts {
				c[col] = int64(math.Round(float64(c[col]) * scale))
			}
		}
	}
	collect(bs, bi, 0, scale)
	collect(ns, ni, 1, 1)
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	bw := bufio.NewWriter(w)
	var buf []byte
	for _, k := range keys {
		c := counts[k]
		buf = append(buf[:0], k...)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, c[0], 10)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, c[1], 10)
		buf = append(buf, '\n')
		bw.Write(buf)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("folded: %w", err)
	}
	return nil
}
