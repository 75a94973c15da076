package flamegraph

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/emberprof/ember/export/internal/synth"
	"github.com/google/pprof/profile"
)

type svgDoc struct {
	XMLName xml.Name   `xml:"svg"`
	Width   float64    `xml:"width,attr"`
	Height  float64    `xml:"height,attr"`
	Texts   []string   `xml:"text"`
	Frames  []svgFrame `xml:"g"`
}

type svgFrame struct {
	Title string `xml:"title"`
	Rect  struct {
		X      float64 `xml:"x,attr"`
		Y      float64 `xml:"y,attr"`
		Width  float64 `xml:"width,attr"`
		Height float64 `xml:"height,attr"`
		Fill   string  `xml:"fill,attr"`
	} `xml:"rect"`
	Text string `xml:"text"`
}

// tipRE parses a tooltip's first line: "name (1,234 unit, 5.67%)".
var tipRE = regexp.MustCompile(`^(.*) \(([0-9,]+) (\S+), ([0-9.]+)%\)`)

type parsedFrame struct {
	svgFrame
	name  string
	value int64
}

func parseSVG(t *testing.T, data []byte) (svgDoc, []parsedFrame) {
	t.Helper()
	var doc svgDoc
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	if err := d.Decode(&doc); err != nil {
		t.Fatalf("SVG is not well-formed XML: %v", err)
	}
	var frames []parsedFrame
	for _, f := range doc.Frames {
		m := tipRE.FindStringSubmatch(f.Title)
		if m == nil {
			t.Fatalf("tooltip %q not in flamegraph.pl form", f.Title)
		}
		v, err := strconv.ParseInt(strings.ReplaceAll(m[2], ",", ""), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, parsedFrame{f, m[1], v})
	}
	return doc, frames
}

func writeSVG(t *testing.T, p *profile.Profile, opts Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteSVG(&buf, p, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSVGKnown(t *testing.T) {
	data := writeSVG(t, synth.Known(), Options{Title: "Known <profile> & co", SampleType: "samples", ProcessRoot: true})
	doc, frames := parseSVG(t, data)
	if doc.Width != 1200 {
		t.Errorf("width %g", doc.Width)
	}
	if len(doc.Texts) < 2 || doc.Texts[0] != "Known <profile> & co" || !strings.Contains(doc.Texts[1], "samples/count") {
		t.Errorf("title and subtitle = %q", doc.Texts)
	}
	byName := map[string]parsedFrame{}
	for _, f := range frames {
		if _, dup := byName[f.name]; !dup || f.value > byName[f.name].value {
			byName[f.name] = f
		}
		// Widths by value: 1180 pixels for the total of 15 samples.
		if want := float64(f.value) * (svgWidth - 2*xPad) / 15; math.Abs(f.Rect.Width-want) > 0.051 {
			t.Errorf("%s: width %g for %d samples, want %.2f", f.name, f.Rect.Width, f.value, want)
		}
		if !strings.Contains(f.Title, " samples, ") {
			t.Errorf("tooltip %q lacks the count name", f.Title)
		}
	}
	if len(frames) != 16 {
		t.Errorf("%d frames, want 16 (one per tree node)", len(frames))
	}
	all := byName["all"]
	if all.value != 15 || all.Rect.X != xPad || all.Rect.Y != doc.Height-yPadBottom-frameHeight {
		t.Errorf("root frame %+v", all)
	}
	// A child sits one row above its parent (flame layout), and starts
	// where its parent starts when it is the first child.
	if app, main := byName["app"], byName["main"]; main.Rect.Y != app.Rect.Y-frameHeight || main.Rect.X != app.Rect.X {
		t.Errorf("app %+v, main %+v", app.Rect, main.Rect)
	}
	if h := byName["helper"]; !strings.Contains(h.Title, "helper.h:7") {
		t.Errorf("helper tooltip %q lacks file:line", h.Title)
	}
	if k := byName["vfs_read"]; !strings.Contains(k.Title, "[kernel]") || k.Rect.Fill == byName["read"].Rect.Fill {
		t.Errorf("kernel frame %q not told apart", k.Title)
	}
	if !strings.Contains(string(data), "Known &lt;profile&gt; &amp; co") {
		t.Errorf("title not escaped")
	}
}

func TestSVGColours(t *testing.T) {
	_, frames := parseSVG(t, writeSVG(t, synth.Wall(), Options{}))
	fill := map[string]rgb{}
	for _, f := range frames {
		var c rgb
		if _, err := fmtSscanRGB(f.Rect.Fill, &c); err != nil {
			t.Fatalf("fill %q: %v", f.Rect.Fill, err)
		}
		fill[f.name] = c
	}
	warm := func(c rgb) bool { return c.r > c.b+60 }
	blue := func(c rgb) bool { return c.b > c.r+20 }
	if !warm(fill["compute"]) {
		t.Errorf("on-CPU compute not warm: %v", fill["compute"])
	}
	if !blue(fill["read"]) || !blue(fill["schedule"]) {
		t.Errorf("off-CPU frames not blue: read %v, schedule %v", fill["read"], fill["schedule"])
	}
	if fill["read"] == fill["schedule"] {
		t.Errorf("kernel and user off-CPU frames share a colour")
	}
}

func fmtSscanRGB(s string, c *rgb) (int, error) {
	var r, g, b uint8
	n, err := fmt.Sscanf(s, "rgb(%d,%d,%d)", &r, &g, &b)
	*c = rgb{r, g, b}
	return n, err
}

func TestSVGMinWidth(t *testing.T) {
	p := synth.Generate(20000, 3)
	_, frames := parseSVG(t, writeSVG(t, p, Options{}))
	set := 0
	for _, f := range frames {
		if f.Rect.Width < minWidth-0.05 {
			t.Fatalf("frame %s is %g px wide, under the minimum", f.name, f.Rect.Width)
		}
		set++
	}
	g, err := newGraph(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if set >= g.tree.Len() {
		t.Errorf("%d frames drawn of %d nodes: narrow frames not left out", set, g.tree.Len())
	}
	t.Logf("%d of %d nodes drawn", set, g.tree.Len())
}

func TestEmptyProfile(t *testing.T) {
	p := synth.Known()
	p.Sample = nil
	_, frames := parseSVG(t, writeSVG(t, p, Options{}))
	if len(frames) != 0 {
		t.Errorf("%d frames for an empty profile", len(frames))
	}
	d := readPage(t, writePage(t, p, Options{}))
	if len(d.Frame) != 1 || d.Values[0][0] != 0 {
		t.Errorf("empty profile page: %d nodes", len(d.Frame))
	}
}
