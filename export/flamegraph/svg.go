package flamegraph

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/emberprof/ember/export/stacks"
	"github.com/google/pprof/profile"
)

// Geometry of the SVG, as flamegraph.pl's defaults.
const (
	svgWidth    = 1200.0
	frameHeight = 16.0
	fontSize    = 12.0
	fontWidth   = 0.59 // average character width, in font sizes
	xPad        = 10.0
	minWidth    = 0.1 // frames narrower than this many pixels are left out
	yPadTop     = fontSize * 3
	yPadBottom  = fontSize*2 + 10
)

// WriteSVG writes p as a static flame graph in SVG, root at the bottom, one
// sample type (opts.SampleType). Each frame's <title> is its tooltip: name,
// value, share, and source file.
func WriteSVG(w io.Writer, p *profile.Profile, opts Options) error {
	g, err := newGraph(p, opts)
	if err != nil {
		return err
	}
	return g.writeSVG(w)
}

// WriteDiffSVG writes a differential flame graph of base and new in SVG:
// widths by new, red where new spends more, blue where less.
func WriteDiffSVG(w io.Writer, base, newer *profile.Profile, opts DiffOptions) error {
	g, err := newDiffGraph(base, newer, opts)
	if err != nil {
		return err
	}
	return g.writeSVG(w)
}

var xmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")

// xmlText escapes s for XML text and attributes, dropping characters XML
// cannot carry.
func xmlText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r != 0xFFFE && r != 0xFFFF {
			return r
		}
		return -1
	}, strings.ToValidUTF8(s, "\uFFFD"))
	return xmlEscaper.Replace(s)
}

func (g *graph) writeSVG(w io.Writer) error {
	t := g.tree
	col := g.col
	vals := t.Values[col]
	total := vals[0]
	depth := t.MaxDepth()
	height := float64(depth+1)*frameHeight + yPadTop + yPadBottom
	vt := g.types[col]

	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<?xml version="1.0" standalone="no"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<svg version="1.1" width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg">
<style type="text/css">text { font-family: Verdana, sans-serif; font-size: %gpx; fill: rgb(0,0,0); } .title { font-size: %gpx; text-anchor: middle; } .sub { fill: rgb(100,100,100); text-anchor: middle; }</style>
<rect x="0" y="0" width="100%%" height="100%%" fill="rgb(248,248,248)"/>
<text class="title" x="%g" y="%g">%s</text>
`, int(svgWidth), int(height), int(svgWidth), int(height), fontSize, fontSize+5, svgWidth/2, fontSize*2, xmlText(g.title))
	sub := vt.Type + "/" + vt.Unit + ", total " + commas(total) + " " + countName(vt)
	if g.diff {
		sub = "widths by new, red: new spends more, blue: less; " + sub
	}
	fmt.Fprintf(bw, "<text class=\"sub\" x=\"%g\" y=\"%g\">%s<title>%s</title></text>\n", svgWidth/2, fontSize*2+fontSize+2,
		xmlText(sub), xmlText(strings.Join(g.notes, "\n")))

	if total > 0 {
		scale := (svgWidth - 2*xPad) / float64(total)
		// next[d] is where the next child at depth d starts, in value units.
		next := make([]int64, depth+2)
		for i := 0; i < t.Len(); {
			d := t.Depth[i]
			x := next[d]
			v := vals[i]
			next[d] += v
			next[d+1] = x
			width := float64(v) * scale
			if v <= 0 || width < minWidth {
				i = t.End(i) // its children are narrower still
				continue
			}
			x1 := xPad + float64(x)*scale
			y1 := height - yPadBottom - float64(d+1)*frameHeight
			g.writeSVGFrame(bw, i, x1, y1, width, total)
			i++
		}
	}
	bw.WriteString("</svg>\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("flamegraph: %w", err)
	}
	return nil
}

func (g *graph) writeSVGFrame(bw *bufio.Writer, i int, x, y, width float64, total int64) {
	t := g.tree
	f := t.Frames[t.Frame[i]]
	v := t.Values[g.col][i]
	vt := g.types[g.col]
	var tip strings.Builder
	fmt.Fprintf(&tip, "%s (%s %s, %.2f%%)", f.Name, commas(v), countName(vt), 100*float64(v)/float64(total))
	fill := g.nodeColour(i, g.col)
	if g.diff {
		b := t.Values[0][i]
		fmt.Fprintf(&tip, "\nbase %s, new %s, change %+.2f%%, self change %s", commas(b), commas(v),
			100*float64(v-b)/float64(total), commas(g.selfDelta[i]))
	}
	if src := source(f, t.Line[i]); src != "" {
		tip.WriteString("\n" + src)
	}
	if f.Kind == stacks.Kernel {
		tip.WriteString("\n[kernel]")
	}
	fmt.Fprintf(bw, "<g>\n<title>%s</title><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" rx=\"2\" ry=\"2\"/>\n",
		xmlText(tip.String()), x, y, width, frameHeight-1, fill)
	if label := fitText(f.Name, width); label != "" {
		fmt.Fprintf(bw, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", x+3, y+frameHeight-5, xmlText(label))
	}
	bw.WriteString("</g>\n")
}

// source formats a frame's file and line, "" when unknown.
func source(f stacks.Frame, line int64) string {
	if f.File == "" {
		return ""
	}
	if line > 0 {
		return f.File + ":" + strconv.FormatInt(line, 10)
	}
	return f.File
}

// fitText returns as much of name as fits in width pixels, ending in ".."
// when cut, or "" when not even three characters fit.
func fitText(name string, width float64) string {
	n := int((width - 6) / (fontSize * fontWidth))
	if n < 3 {
		return ""
	}
	r := []rune(name)
	if len(r) <= n {
		return name
	}
	return string(r[:n-2]) + ".."
}
