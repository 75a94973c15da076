package output

import (
	"errors"
	"fmt"
	"io"

	"github.com/emberprof/ember/export/flamegraph"
	"github.com/emberprof/ember/export/folded"
	"github.com/emberprof/ember/export/stacks"
	"github.com/google/pprof/profile"
)

// DiffOptions control WriteDiffFile.
type DiffOptions struct {
	Options
	// NoNormalize compares raw values; by default the base is scaled so
	// that its total equals the new profile's.
	NoNormalize bool
}

// WriteDiffFile writes the difference from base to newer to path, in the
// form its extension picks: a differential flame graph (.html, .svg; red
// where newer spends more, blue where less), two-column folded stacks
// (.folded, .txt; "stack base new", as difffolded.pl writes), or a pprof
// profile (.pb.gz) holding newer and the negated base labelled pprof::base,
// the form `pprof -diff_base` builds.
func WriteDiffFile(path string, base, newer *profile.Profile, opts DiffOptions) error {
	f, err := FormatOf(path)
	if err != nil {
		return err
	}
	if base == nil || newer == nil {
		return errors.New("output: nil profile")
	}
	fo := flamegraph.DiffOptions{Options: fgOptions(opts.Options), NoNormalize: opts.NoNormalize}
	return writeAtomic(path, func(w io.Writer) error {
		switch f {
		case HTML:
			return flamegraph.WriteDiffHTML(w, base, newer, fo)
		case SVG:
			return flamegraph.WriteDiffSVG(w, base, newer, fo)
		case Folded:
			return folded.WriteDiff(w, base, newer, folded.DiffOptions{
				Options:     folded.Options{SampleType: opts.SampleType, ProcessRoot: !opts.NoProcess},
				NoNormalize: opts.NoNormalize,
			})
		case PProf:
			d, err := DiffProfile(base, newer, !opts.NoNormalize)
			if err != nil {
				return err
			}
			return d.Write(w)
		}
		return fmt.Errorf("%w: format %d", ErrFormat, f)
	})
}

// DiffProfile returns one profile holding newer's samples and base's with
// their values negated and the label pprof::base=true, which pprof's tools
// show as a difference. With normalize, each sample type of base is first
// scaled to newer's total of that type.
func DiffProfile(base, newer *profile.Profile, normalize bool) (*profile.Profile, error) {
	b := base.Copy()
	ratios := make([]float64, len(b.SampleType))
	for i := range ratios {
		ratios[i] = -1
	}
	if normalize {
		for i, vt := range b.SampleType {
			j, err := stacks.SampleIndex(newer, vt.Type+"/"+vt.Unit)
			if err != nil {
				return nil, fmt.Errorf("output: new: %w", err)
			}
			if bt := total(b, i); bt != 0 {
				ratios[i] = -float64(total(newer, j)) / float64(bt)
			}
		}
	}
	if err := b.ScaleN(ratios); err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	for _, s := range b.Sample {
		if s.Label == nil {
			s.Label = map[string][]string{}
		}
		s.Label["pprof::base"] = []string{"true"}
	}
	d, err := profile.Merge([]*profile.Profile{newer.Copy(), b})
	if err != nil {
		return nil, fmt.Errorf("output: profiles cannot be compared: %w", err)
	}
	return d, nil
}

func total(p *profile.Profile, i int) int64 {
	var t int64
	for _, s := range p.Sample {
		t += s.Value[i]
	}
	return t
}
