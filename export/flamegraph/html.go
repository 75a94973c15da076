package flamegraph

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"strconv"
	"strings"

	"github.com/google/pprof/profile"
)

// The page is split in three embedded files so that each stays readable:
// the HTML and CSS skeleton, the script, and the data written between them.
var (
	//go:embed flamegraph.html
	pageHTML string
	//go:embed flamegraph.js
	pageJS string
)

// WriteHTML writes p as one self-contained, interactive HTML page: no
// network access, no external script, style or font. All sample types of p
// are in the page; opts.SampleType is the one shown first.
//
// A profile whose samples carry an off-CPU cause label is drawn grouped by
// cause, the grouping hidden unless opts.GroupBy asks for it: the page then
// offers to show it and to colour frames by cause, without a second graph.
func WriteHTML(w io.Writer, p *profile.Profile, opts Options) error {
	group, hidden := opts.GroupBy, false
	if group == "" && hasLabel(p, causeLabel) {
		opts.GroupBy, group, hidden = causeLabel, causeLabel, true
	}
	g, err := newGraph(p, opts)
	if err != nil {
		return err
	}
	g.group, g.groupHidden = group, hidden
	return g.writeHTML(w)
}

// causeLabel is the label of off-CPU samples that says why a thread waited.
const causeLabel = "cause"

func hasLabel(p *profile.Profile, key string) bool {
	for _, s := range p.Sample {
		if len(s.Label[key]) > 0 {
			return true
		}
	}
	return false
}

// WriteDiffHTML writes a differential flame graph of base and new as an
// interactive HTML page.
func WriteDiffHTML(w io.Writer, base, newer *profile.Profile, opts DiffOptions) error {
	g, err := newDiffGraph(base, newer, opts)
	if err != nil {
		return err
	}
	return g.writeHTML(w)
}

// pageMeta is the small part of the page's data, encoded with encoding/json
// (which escapes "<", so that no "</script>" can end the data early).
type pageMeta struct {
	Title   string     `json:"title"`
	Notes   []string   `json:"notes"` // shown under the title
	Types   []pageType `json:"types"`
	Default int        `json:"default"`
	Diff    bool       `json:"diff"`
	Wall    [2]int     `json:"wall"` // cpu and off-CPU columns of a wall type, or -1
	// Group is the label whose values root the stacks (frames "LABEL:
	// VALUE"), "" if none; GroupHidden says the page starts without them.
	Group       string   `json:"group"`
	GroupHidden bool     `json:"groupHidden"`
	Strings     []string `json:"strings"` // frame names and files
}

type pageType struct {
	Name  string `json:"name"`
	Unit  string `json:"unit"`
	Class string `json:"class"` // colour class: cpu, off, wall
	Scale int64  `json:"scale"` // the page multiplies stored values by Scale
}

// The page's data is one JSON object: pageMeta's fields and, per frame and
// per node, arrays of integers (struct of arrays, so 100k-stack profiles stay
// a few megabytes and parse fast):
//
//	frameName, frameFile  index into strings (-1: no file)
//	frameKind             0 user, 1 kernel, 2 process or root
//	frame                 per node, in preorder: index of its frame
//	depth                 per node: 0 for the root; parents follow from preorder
//	line                  per node: source line, 0 when unknown or several
//	values                per column: per node inclusive value / scale
func (g *graph) writeHTML(w io.Writer) error {
	t := g.tree
	meta := pageMeta{Title: g.title, Notes: g.notes, Default: g.col, Diff: g.diff, Group: g.group, GroupHidden: g.groupHidden}
	meta.Wall[0], meta.Wall[1] = wallColumns(g.types)
	if g.diff {
		meta.Wall = [2]int{-1, -1}
	}
	for c, vt := range g.types {
		meta.Types = append(meta.Types, pageType{Name: vt.Type, Unit: vt.Unit, Class: typeClass(vt), Scale: gcd(t.Values[c])})
	}
	strIndex := map[string]int32{}
	str := func(s string) int32 {
		i, ok := strIndex[s]
		if !ok {
			i = int32(len(meta.Strings))
			meta.Strings = append(meta.Strings, s)
			strIndex[s] = i
		}
		return i
	}
	names := make([]int32, len(t.Frames))
	files := make([]int32, len(t.Frames))
	kinds := make([]int32, len(t.Frames))
	for i, f := range t.Frames {
		names[i] = str(f.Name)
		files[i] = -1
		if f.File != "" {
			files[i] = str(f.File)
		}
		kinds[i] = int32(f.Kind)
	}
	metaJSON, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("flamegraph: %w", err)
	}

	head, rest, ok := strings.Cut(pageHTML, "{{DATA}}")
	mid, tail, ok2 := strings.Cut(rest, "{{SCRIPT}}")
	if !ok || !ok2 {
		panic("flamegraph: page template lacks {{DATA}} or {{SCRIPT}}")
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	bw.WriteString(strings.ReplaceAll(head, "{{TITLE}}", html.EscapeString(g.title)))
	bw.Write(metaJSON[:len(metaJSON)-1]) // leave the object open
	buf := make([]byte, 0, 1<<16)
	// array writes prefix, then the n integers at(i) as a JSON array.
	array := func(prefix string, n int, at func(int) int64) {
		buf = append(buf[:0], prefix...)
		buf = append(buf, '[')
		for i := 0; i < n; i++ {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendInt(buf, at(i), 10)
			if len(buf) > 60000 {
				bw.Write(buf)
				buf = buf[:0]
			}
		}
		buf = append(buf, ']')
		bw.Write(buf)
	}
	array(",\n\"frameName\":", len(names), func(i int) int64 { return int64(names[i]) })
	array(",\n\"frameFile\":", len(files), func(i int) int64 { return int64(files[i]) })
	array(",\n\"frameKind\":", len(kinds), func(i int) int64 { return int64(kinds[i]) })
	array(",\n\"frame\":", t.Len(), func(i int) int64 { return int64(t.Frame[i]) })
	array(",\n\"depth\":", t.Len(), func(i int) int64 { return int64(t.Depth[i]) })
	array(",\n\"line\":", t.Len(), func(i int) int64 { return t.Line[i] })
	bw.WriteString(",\n\"values\":[")
	for c, vals := range t.Values {
		prefix := "\n"
		if c > 0 {
			prefix = ",\n"
		}
		s := meta.Types[c].Scale
		array(prefix, len(vals), func(i int) int64 { return vals[i] / s })
	}
	bw.WriteString("]}")
	bw.WriteString(mid)
	bw.WriteString(pageJS)
	bw.WriteString(tail)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("flamegraph: %w", err)
	}
	return nil
}

// gcd returns the greatest common divisor of vs (1 if all are zero): Ember's
// cpu/nanoseconds values are multiples of the sampling period, so dividing
// by it shortens the page's numbers to sample counts.
func gcd(vs []int64) int64 {
	var g int64
	for _, v := range vs {
		if v < 0 {
			v = -v
		}
		for v != 0 {
			g, v = v, g%v
		}
		if g == 1 {
			return 1
		}
	}
	if g == 0 {
		return 1
	}
	return g
}
