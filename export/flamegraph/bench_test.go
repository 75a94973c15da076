package flamegraph

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emberprof/ember/export/folded"
	"github.com/emberprof/ember/export/internal/synth"
	"github.com/google/pprof/profile"
)

// Benchmark sizes: distinct stacks of generated profiles (depth 20 to 40,
// shared prefixes, kernel tails, inlined frames).
var benchSizes = []int{1000, 10000, 100000}

var (
	benchMu       sync.Mutex
	benchProfiles = map[int]*profile.Profile{}
)

func benchProfile(n int) *profile.Profile {
	benchMu.Lock()
	defer benchMu.Unlock()
	if p, ok := benchProfiles[n]; ok {
		return p
	}
	p := synth.Generate(n, 42)
	benchProfiles[n] = p
	return p
}

func sizeName(n int) string { return strconv.Itoa(n/1000) + "k" }

// baseline times how long encoding p as gzipped pprof takes: the cost every
// profile pays anyway, against which the writers' costs are ratios.
func baseline(b *testing.B, p *profile.Profile) time.Duration {
	b.Helper()
	const runs = 3
	start := time.Now()
	for range runs {
		if err := p.Write(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start) / runs
}

// BenchmarkWrite reports each writer's time per profile and its ratio to
// encoding the same profile as pprof (x-pprof), and the output size.
func BenchmarkWrite(b *testing.B) {
	writers := []struct {
		name  string
		write func(io.Writer, *profile.Profile) error
	}{
		{"html", func(w io.Writer, p *profile.Profile) error { return WriteHTML(w, p, Options{}) }},
		{"svg", func(w io.Writer, p *profile.Profile) error { return WriteSVG(w, p, Options{}) }},
		{"folded", func(w io.Writer, p *profile.Profile) error { return folded.Write(w, p, folded.Options{}) }},
	}
	for _, n := range benchSizes {
		p := benchProfile(n)
		base := baseline(b, p)
		for _, wr := range writers {
			b.Run(wr.name+"/"+sizeName(n), func(b *testing.B) {
				var size int
				for b.Loop() {
					cw := &countingWriter{}
					if err := wr.write(cw, p); err != nil {
						b.Fatal(err)
					}
					size = cw.n
				}
				perOp := b.Elapsed() / time.Duration(b.N)
				b.ReportMetric(float64(perOp)/float64(base), "x-pprof")
				b.ReportMetric(float64(size)/1e6, "MB")
			})
		}
	}
}

type countingWriter struct{ n int }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

// BenchmarkBrowserRender opens the HTML page of each size in headless
// Chromium. render-ms is the page's own measure, from navigation start to
// the end of its first drawing (reading 1k to 100k stacks' data included);
// wall-ms is the whole Chromium run, and x-blank its ratio to Chromium
// opening a blank page in the same run.
func BenchmarkBrowserRender(b *testing.B) {
	bin := chromium(b)
	dir := b.TempDir()
	blank := filepath.Join(dir, "blank.html")
	writeBlank(b, blank)
	start := time.Now()
	runChromium(b, bin, "file://"+blank, "--dump-dom", "--window-size=1200,800")
	blankTime := time.Since(start)
	b.Logf("chromium on a blank page: %v", blankTime.Round(time.Millisecond))
	for _, n := range benchSizes {
		page, g := writePageFile(b, dir, fmt.Sprintf("p%d.html", n), benchProfile(n), Options{})
		b.Run(sizeName(n), func(b *testing.B) {
			var render, script float64
			for b.Loop() {
				st := pageState(b, bin, page, "")
				render += st.float(b, "render-ms")
				script += st.float(b, "script-ms")
			}
			b.ReportMetric(render/float64(b.N), "render-ms")
			b.ReportMetric(script/float64(b.N), "script-ms")
			wall := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(wall.Milliseconds()), "wall-ms")
			b.ReportMetric(float64(wall)/float64(blankTime), "x-blank")
			b.ReportMetric(float64(g.tree.Len()), "nodes")
		})
	}
}

func writeBlank(b *testing.B, path string) {
	b.Helper()
	var buf bytes.Buffer
	buf.WriteString("<!DOCTYPE html><title>blank</title><div id=\"ember-state\" data-frames-drawn=\"0\"></div>")
	if err := writeFile(path, buf.Bytes()); err != nil {
		b.Fatal(err)
	}
}
