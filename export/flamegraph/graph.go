package flamegraph

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/emberprof/ember/export/stacks"
	"github.com/google/pprof/profile"
)

// Options control how a profile is drawn.
type Options struct {
	// Title heads the graph; "" gives "Flame Graph" or "Differential Flame Graph".
	Title string
	// SampleType is the sample type drawn (SVG) or shown first (HTML), as
	// stacks.Set.Index takes it; "" is the profile's default.
	SampleType string
	// ProcessRoot puts the process name (comm label) at the root of each stack.
	ProcessRoot bool
	// GroupBy roots each stack at a frame naming its value of this label
	// (stacks.Options.GroupBy). An HTML page of a profile with off-CPU
	// causes is always grouped by cause, and shows or hides the grouping.
	GroupBy string
}

// graph is what both writers draw: a tree with the meaning of its columns.
type graph struct {
	tree  *Tree
	title string
	notes []string             // what the profile says of itself: when, how long, comments
	types []*profile.ValueType // per column
	col   int                  // column drawn or shown first
	diff  bool                 // columns are base, new

	selfDelta []int64 // diff: per node, change of its self value
	maxDelta  int64   // diff: largest |selfDelta|
	// group is the label whose values root the stacks; groupHidden: the
	// HTML page starts without those roots (WriteHTML).
	group       string
	groupHidden bool
}

// selfDeltas returns, per node of a diff tree, new self minus base self,
// and the largest absolute change.
func selfDeltas(t *Tree) ([]int64, int64) {
	d := make([]int64, t.Len())
	for i := range d {
		d[i] = t.Values[1][i] - t.Values[0][i]
	}
	// Subtract each node's inclusive change from its parent's: the last
	// node seen at the depth above is the parent, in preorder.
	last := make([]int, t.MaxDepth()+1)
	for i := 1; i < t.Len(); i++ {
		dep := t.Depth[i]
		last[dep] = i
		p := last[dep-1]
		d[p] -= t.Values[1][i] - t.Values[0][i]
	}
	var m int64
	for _, v := range d {
		m = max(m, v, -v)
	}
	return d, m
}

// newGraph builds the graph of one profile.
func newGraph(p *profile.Profile, opts Options) (*graph, error) {
	set, err := stacks.FromProfile(p, stacks.Options{ProcessRoot: opts.ProcessRoot, GroupBy: opts.GroupBy})
	if err != nil {
		return nil, fmt.Errorf("flamegraph: %w", err)
	}
	col, err := set.Index(opts.SampleType)
	if err != nil {
		return nil, fmt.Errorf("flamegraph: %w", err)
	}
	title := opts.Title
	if title == "" {
		title = "Flame Graph"
	}
	return &graph{tree: NewTree(set), title: title, notes: describe(p), types: set.Types, col: col}, nil
}

// DiffOptions control a differential flame graph.
type DiffOptions struct {
	Options
	// NoNormalize compares raw values; by default the base is scaled so that
	// its total equals the new profile's, so that the colours show shifts
	// in where time goes rather than a change in the amount of time.
	NoNormalize bool
}

// ErrNoSamples is returned when a profile to compare has no value of the
// chosen sample type, so that normalising by its total is impossible.
var ErrNoSamples = errors.New("profile has no samples of this type")

// newDiffGraph builds the graph comparing base with new: column 0 is base
// (normalised to new's total unless NoNormalize), column 1 is new.
func newDiffGraph(base, newer *profile.Profile, opts DiffOptions) (*graph, error) {
	sopts := stacks.Options{ProcessRoot: opts.ProcessRoot}
	bs, err := stacks.FromProfile(base, sopts)
	if err != nil {
		return nil, fmt.Errorf("flamegraph: base: %w", err)
	}
	ns, err := stacks.FromProfile(newer, sopts)
	if err != nil {
		return nil, fmt.Errorf("flamegraph: new: %w", err)
	}
	ni, err := ns.Index(opts.SampleType)
	if err != nil {
		return nil, fmt.Errorf("flamegraph: new: %w", err)
	}
	// The base is read with the same sample type as new, by name.
	vt := ns.Types[ni]
	bi, err := bs.Index(vt.Type + "/" + vt.Unit)
	if err != nil {
		return nil, fmt.Errorf("flamegraph: base: %w", err)
	}
	scale := 1.0
	if !opts.NoNormalize {
		bt, nt := bs.Total(bi), ns.Total(ni)
		if bt <= 0 {
			return nil, fmt.Errorf("flamegraph: base: %w %s", ErrNoSamples, vt.Type)
		}
		scale = float64(nt) / float64(bt)
	}
	title := opts.Title
	if title == "" {
		title = "Differential Flame Graph"
	}
	tree := build([]column{{bs, bi, scale}, {ns, ni, 1}})
	bvt := &profile.ValueType{Type: "base " + vt.Type, Unit: vt.Unit}
	nvt := &profile.ValueType{Type: "new " + vt.Type, Unit: vt.Unit}
	notes := []string{"base: " + strings.Join(describe(base), ", "), "new: " + strings.Join(describe(newer), ", ")}
	return &graph{tree: tree, title: title, notes: notes, types: []*profile.ValueType{bvt, nvt}, col: 1, diff: true}, nil
}

// describe returns what p says of itself: when it was taken, for how long,
// at what period, and its comments (Ember's note, for one, lost samples).
func describe(p *profile.Profile) []string {
	var notes []string
	if p.TimeNanos > 0 {
		notes = append(notes, time.Unix(0, p.TimeNanos).UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	if p.DurationNanos > 0 {
		notes = append(notes, "duration "+time.Duration(p.DurationNanos).Round(time.Millisecond).String())
	}
	if p.Period > 0 && p.PeriodType != nil {
		period := strconv.FormatInt(p.Period, 10) + " " + p.PeriodType.Unit
		if p.PeriodType.Unit == "nanoseconds" {
			period = time.Duration(p.Period).String()
		}
		notes = append(notes, "period "+period+" of "+p.PeriodType.Type)
	}
	const maxComments = 20
	for i, c := range p.Comments {
		if i == maxComments {
			notes = append(notes, fmt.Sprintf("(%d more comments)", len(p.Comments)-maxComments))
			break
		}
		notes = append(notes, c)
	}
	return notes
}

// rgb is a colour.
type rgb struct{ r, g, b uint8 }

func (c rgb) String() string {
	return "rgb(" + strconv.Itoa(int(c.r)) + "," + strconv.Itoa(int(c.g)) + "," + strconv.Itoa(int(c.b)) + ")"
}

// nameHash returns three numbers in [0, 1) that depend only on name, so that
// a function keeps its colour across graphs. The HTML page's script computes
// the same (palette in flamegraph.js).
func nameHash(name string) (float64, float64, float64) {
	h := fnv.New32a()
	h.Write([]byte(name))
	v := h.Sum32()
	return float64(v&0x3ff) / 1024, float64(v>>10&0x3ff) / 1024, float64(v>>20&0x3ff) / 1024
}

// frameColour colours a frame: on-CPU in warm colours (user red to yellow,
// kernel tan), off-CPU in blues (user blue, kernel slate), process and root
// frames grey.
func frameColour(f stacks.Frame, offCPU bool) rgb {
	a, b, c := nameHash(f.Name)
	ch := func(base, span int, v float64) uint8 { return uint8(base + int(float64(span)*v)) }
	switch {
	case f.Kind == stacks.Process:
		g := ch(190, 30, a)
		return rgb{g, g, g}
	case offCPU && f.Kind == stacks.Kernel:
		return rgb{ch(100, 40, a), ch(150, 40, b), ch(160, 30, c)}
	case offCPU:
		return rgb{ch(60, 60, a), ch(120, 60, b), ch(210, 45, c)}
	case f.Kind == stacks.Kernel:
		return rgb{ch(180, 40, a), ch(130, 40, b), ch(70, 30, c)}
	}
	return rgb{ch(205, 50, a), ch(30, 190, b), ch(0, 55, c)}
}

// diffColour colours a frame of a differential graph by d, the change of
// its own (self) value scaled to [-1, 1] by the largest change of any frame,
// as flamegraph.pl does: red for more, blue for less, white for no change.
func diffColour(d float64) rgb {
	fade := uint8(255 - int(210*min(1, abs(d))))
	if d > 0 {
		return rgb{255, fade, fade}
	}
	return rgb{fade, fade, 255}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// nodeColour colours node i of g drawn by column col.
func (g *graph) nodeColour(i, col int) rgb {
	t := g.tree
	if g.diff {
		if g.selfDelta == nil {
			g.selfDelta, g.maxDelta = selfDeltas(t)
		}
		if g.maxDelta == 0 {
			return diffColour(0)
		}
		return diffColour(float64(g.selfDelta[i]) / float64(g.maxDelta))
	}
	off := false
	switch typeClass(g.types[col]) {
	case classOff:
		off = true
	case classWall:
		if c, o := wallColumns(g.types); c >= 0 {
			off = t.Values[o][i] > t.Values[c][i]
		}
	}
	return frameColour(t.Frames[t.Frame[i]], off)
}

// countName names the unit of a sample type in tooltips, as flamegraph.pl's
// --countname does.
func countName(vt *profile.ValueType) string {
	if vt.Unit == "count" || vt.Unit == "" {
		return "samples"
	}
	return vt.Unit
}

// commas formats n with thousands separators.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
