package folded

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/emberprof/ember/export/stacks"
	"github.com/google/pprof/profile"
)

// Options control Write.
type Options struct {
	// SampleType selects the value written as the count ("cpu",
	// "offcpu/nanoseconds", "1"); "" is the profile's default.
	SampleType string
	// ProcessRoot puts the process name (comm label) at the root of each
	// stack, as stackcollapse-perf.pl does.
	ProcessRoot bool
	// GroupBy roots each stack at a frame naming its value of this label
	// (stacks.Options.GroupBy).
	GroupBy string
	// KernelSuffix marks kernel frames with "_[k]", which flamegraph.pl
	// (--color=java) and inferno colour apart.
	KernelSuffix bool
}

// Write writes p's stacks to w in folded form, sorted, with stacks whose
// value is not positive left out.
func Write(w io.Writer, p *profile.Profile, opts Options) error {
	set, err := stacks.FromProfile(p, stacks.Options{ProcessRoot: opts.ProcessRoot, GroupBy: opts.GroupBy})
	if err != nil {
		return fmt.Errorf("folded: %w", err)
	}
	i, err := set.Index(opts.SampleType)
	if err != nil {
		return fmt.Errorf("folded: %w", err)
	}
	return WriteSet(w, set, i, opts.KernelSuffix)
}

// WriteSet writes the values of sample type index of set in folded form.
// Stacks that differ only in source lines are merged.
func WriteSet(w io.Writer, set *stacks.Set, index int, kernelSuffix bool) error {
	if index < 0 || index >= len(set.Types) {
		return fmt.Errorf("folded: sample type index %d out of range", index)
	}
	counts := make(map[string]int64, len(set.Stacks))
	eachLine(set, index, kernelSuffix, func(line string, v int64) { counts[line] += v })
	lines := make([]string, 0, len(counts))
	for k := range counts {
		lines = append(lines, k)
	}
	slices.Sort(lines)
	bw := bufio.NewWriter(w)
	buf := make([]byte, 0, 256)
	for _, k := range lines {
		buf = append(buf[:0], k...)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, counts[k], 10)
		buf = append(buf, '\n')
		if _, err := bw.Write(buf); err != nil {
			return fmt.Errorf("folded: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("folded: %w", err)
	}
	return nil
}

// nameReplacer keeps a frame name on one line and free of the separator.
var nameReplacer = strings.NewReplacer(";", ":", "\n", " ", "\r", " ")

// Name is the folded form of a frame's name: ";" and line breaks replaced,
// and "_[k]" appended to kernel frames when kernelSuffix is set.
func Name(f stacks.Frame, kernelSuffix bool) string {
	n := nameReplacer.Replace(f.Name)
	if n == "" {
		n = "[unknown]"
	}
	if kernelSuffix && f.Kind == stacks.Kernel {
		n += "_[k]"
	}
	return n
}

// eachLine calls fn with the folded line of every stack of set (its frames'
// names, root first, joined by ';') whose value of sample type index is
// positive, and that value. Stacks that differ only in source lines give
// the same line: the caller adds their values.
func eachLine(set *stacks.Set, index int, kernelSuffix bool, fn func(line string, v int64)) {
	names := make([]string, len(set.Frames))
	for i, f := range set.Frames {
		names[i] = Name(f, kernelSuffix)
	}
	var sb strings.Builder
	for _, st := range set.Stacks {
		v := st.Values[index]
		if v <= 0 || len(st.Frames) == 0 {
			continue
		}
		sb.Reset()
		for j, id := range st.Frames {
			if j > 0 {
				sb.WriteByte(';')
			}
			sb.WriteString(names[id])
		}
		fn(sb.String(), v)
	}
}
