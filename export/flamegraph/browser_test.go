package flamegraph

import (
	"context"
	"fmt"
	"html"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/internal/synth"
	"github.com/emberprof/ember/internal/testutil"
)

// The browser tests open the HTML page in a real, headless Chromium
// (Debian's chromium package) with no network, and read the state the page
// publishes on #ember-state after its first drawing. The URL fragment sets
// the view (search, zoom, type, layout) as a user's click or typing would.

// chromium returns the path of a Chromium or Chrome binary: $EMBER_CHROMIUM,
// else the first of the usual names on $PATH. Without one the test is
// skipped, or fails under EMBER_REQUIRE_BPF=1 (testutil.SkipOrFail).
func chromium(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("EMBER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testutil.SkipOrFail(tb, "no chromium on $PATH (Debian: apt-get install chromium; or set EMBER_CHROMIUM)")
	return ""
}

// runChromium runs headless Chromium on url with extra arguments and
// returns its standard output.
func runChromium(tb testing.TB, bin, url string, args ...string) []byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	all := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
		"--user-data-dir=" + tb.TempDir(),
	}, args...)
	all = append(all, url)
	cmd := exec.CommandContext(ctx, bin, all...)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s: %v\n%s", bin, err, stderr.String())
	}
	return out
}

// state is what the page publishes on #ember-state.
type state map[string]string

var stateRE = regexp.MustCompile(`<div id="ember-state"([^>]*)>`)
var attrRE = regexp.MustCompile(`data-([a-z-]+)="([^"]*)"`)

// pageState opens page at fragment and returns the state it published.
func pageState(tb testing.TB, bin, page, fragment string) state {
	tb.Helper()
	dom := runChromium(tb, bin, "file://"+page+"#"+fragment, "--dump-dom", "--window-size=1200,800")
	m := stateRE.FindSubmatch(dom)
	if m == nil {
		tb.Fatalf("no #ember-state in the DOM of %s#%s:\n%.2000s", page, fragment, dom)
	}
	st := state{}
	for _, a := range attrRE.FindAllSubmatch(m[1], -1) {
		st[string(a[1])] = html.UnescapeString(string(a[2]))
	}
	if st["frames-drawn"] == "" {
		tb.Fatalf("page at #%s published no drawing (script failed?): %q", fragment, m[0])
	}
	return st
}

func (s state) int(tb testing.TB, key string) int {
	tb.Helper()
	n, err := strconv.Atoi(s[key])
	if err != nil {
		tb.Fatalf("state %s = %q: %v", key, s[key], err)
	}
	return n
}

func (s state) float(tb testing.TB, key string) float64 {
	tb.Helper()
	f, err := strconv.ParseFloat(s[key], 64)
	if err != nil {
		tb.Fatalf("state %s = %q: %v", key, s[key], err)
	}
	return f
}

func writePageFile(tb testing.TB, dir, name string, p *profile.Profile, opts Options) (string, *graph) {
	tb.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	g, err := newGraph(p, opts)
	if err != nil {
		tb.Fatal(err)
	}
	if err := g.writeHTML(f); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return path, g
}

// expectSearch computes from the tree what the page must show for a search
// of the exact name: matching nodes, and the share of the total under the
// outermost of them.
func expectSearch(g *graph, col int, name string) (nodes int, share float64) {
	t := g.tree
	vals := t.Values[col]
	var sum int64
	for i := 0; i < t.Len(); {
		if t.Frames[t.Frame[i]].Name == name && vals[i] > 0 {
			sum += vals[i]
			for j := i; j < t.End(i); j++ {
				if t.Frames[t.Frame[j]].Name == name && vals[j] > 0 {
					nodes++
				}
			}
			i = t.End(i)
			continue
		}
		i++
	}
	return nodes, float64(sum) / float64(vals[0])
}

// widest returns the node of that name with the largest value in col.
func widest(g *graph, col int, name string) int {
	best := -1
	for i := 0; i < g.tree.Len(); i++ {
		if g.tree.Frames[g.tree.Frame[i]].Name == name && (best < 0 || g.tree.Values[col][i] > g.tree.Values[col][best]) {
			best = i
		}
	}
	return best
}

func TestBrowserKnown(t *testing.T) {
	bin := chromium(t)
	page, g := writePageFile(t, t.TempDir(), "known.html", synth.Known(), Options{ProcessRoot: true})

	st := pageState(t, bin, page, "")
	if got := st.int(t, "frames-drawn"); got != g.tree.Len() {
		t.Errorf("frames drawn = %d, want all %d nodes", got, g.tree.Len())
	}
	if st["zoom"] != "all" || st["type"] != "cpu" || st["layout"] != "flame" || st.int(t, "highlighted") != 0 {
		t.Errorf("initial state %v", st)
	}

	// Search: the page highlights every compute frame and reports the share.
	st = pageState(t, bin, page, "search=^compute$")
	nodes, share := expectSearch(g, g.col, "compute")
	if nodes == 0 {
		t.Fatal("profile has no compute frame")
	}
	if st.int(t, "highlighted") != nodes || st.int(t, "matched-nodes") != nodes {
		t.Errorf("search highlighted %s (matched %s) frames, want %d", st["highlighted"], st["matched-nodes"], nodes)
	}
	if got := st.float(t, "matched-share"); abs(got-share) > 1e-6 {
		t.Errorf("matched share %g, want %g", got, share)
	}

	// Zoom: the subtree of the widest run frame plus its ancestors are drawn.
	st = pageState(t, bin, page, "zoom=run")
	run := widest(g, g.col, "run")
	want := g.tree.End(run) - run + int(g.tree.Depth[run])
	if st["zoom"] != "run" || st.int(t, "zoom-node") != run || st.int(t, "frames-drawn") != want {
		t.Errorf("zoomed state %v; want zoom node %d, %d frames drawn", st, run, want)
	}

	// Zoom to a node given by index, as a click writes the fragment.
	other := nodeByPath(g, "other", "main", "run")
	st = pageState(t, bin, page, "zoom=run&node="+strconv.Itoa(other))
	if st.int(t, "zoom-node") != other {
		t.Errorf("zoom to node %d: state %v", other, st)
	}

	// The tooltip of helper: name, file:line, value and share.
	st = pageState(t, bin, page, "tip=helper")
	helper := widest(g, g.col, "helper")
	if st.int(t, "tip-node") != helper {
		t.Errorf("the mouse on helper's frame finds node %s, want %d", st["tip-node"], helper)
	}
	v := g.tree.Values[g.col][helper]
	pctOfAll := fmt.Sprintf("%.2f%%", 100*float64(v)/float64(g.tree.Values[g.col][0]))
	for _, want := range []string{"helper", "at helper.h:7", "user frame", "cpu: ", commas(v) + " ns", pctOfAll + " of all"} {
		if !strings.Contains(st["tip"], want) {
			t.Errorf("tooltip %q lacks %q", st["tip"], want)
		}
	}
	st = pageState(t, bin, page, "tip=vfs_read")
	if !strings.Contains(st["tip"], "kernel frame") || !strings.Contains(st["tip"], "fs/read_write.c:470") {
		t.Errorf("kernel tooltip %q", st["tip"])
	}

	// Another sample type and the icicle layout, where hit tests must
	// follow the frames to the top.
	st = pageState(t, bin, page, "type=samples&layout=icicle&tip=vfs_read")
	if st["type"] != "samples" || st["layout"] != "icicle" || st.int(t, "tip-node") != widest(g, 0, "vfs_read") {
		t.Errorf("type/layout state %v", st)
	}
}

func TestBrowserGenerated(t *testing.T) {
	bin := chromium(t)
	page, g := writePageFile(t, t.TempDir(), "gen.html", synth.Generate(3000, 2), Options{})
	st := pageState(t, bin, page, "")
	drawn := st.int(t, "frames-drawn")
	if drawn == 0 || drawn > g.tree.Len() || st.int(t, "nodes") != g.tree.Len() {
		t.Fatalf("drew %d frames of %d nodes (page has %s)", drawn, g.tree.Len(), st["nodes"])
	}
	// A kernel function, found as the user would type it.
	name := "kfunc_7"
	nodes, share := expectSearch(g, g.col, name)
	if nodes == 0 {
		t.Fatalf("generated profile has no %s", name)
	}
	st = pageState(t, bin, page, "search=^"+name+"$")
	if st.int(t, "matched-nodes") != nodes || abs(st.float(t, "matched-share")-share) > 1e-6 {
		t.Errorf("search %s: matched %s nodes, share %s; want %d, %.6f", name, st["matched-nodes"], st["matched-share"], nodes, share)
	}
	if st.int(t, "highlighted") == 0 {
		t.Errorf("search %s highlighted no drawn frame", name)
	}
	// Zooming into a frame draws its subtree, wider: other frames change.
	// Pick a frame that covers between 2% and 50% of the total.
	vals := g.tree.Values[g.col]
	target := -1
	for i := 1; i < g.tree.Len() && target < 0; i++ {
		if v := vals[i]; v > vals[0]/50 && v < vals[0]/2 {
			target = i
		}
	}
	if target < 0 {
		t.Fatal("no frame between 2% and 50% of the total")
	}
	name = g.tree.Frames[g.tree.Frame[target]].Name
	target = widest(g, g.col, name)
	st = pageState(t, bin, page, "zoom="+name)
	if st["zoom"] != name || st.int(t, "zoom-node") != target || st.int(t, "frames-drawn") == drawn {
		t.Errorf("zoom to %s (node %d): state %v (unzoomed drew %d)", name, target, st, drawn)
	}
}

// TestBrowserScreenshot saves a screenshot of a searched page, logs where,
// and checks that its pixels show highlighted, warm (on-CPU) and kernel
// frames.
func TestBrowserScreenshot(t *testing.T) {
	bin := chromium(t)
	dir := artifacts(t)
	page, _ := writePageFile(t, dir, "flamegraph-known.html", synth.Known(), Options{ProcessRoot: true, Title: "Ember test profile"})
	counts := screenshot(t, bin, page, "search=helper", filepath.Join(dir, "flamegraph-known.png"))
	for _, k := range []string{"highlight", "warm", "kernel"} {
		if counts[k] < 200 {
			t.Errorf("screenshot has %d %s pixels", counts[k], k)
		}
	}
}

// TestBrowserWallAndDiff checks the colours of a wall-mode page (on-CPU
// warm, off-CPU blue, kernel apart) and of a differential page (red, blue).
func TestBrowserWallAndDiff(t *testing.T) {
	bin := chromium(t)
	dir := artifacts(t)
	page, g := writePageFile(t, dir, "flamegraph-wall.html", synth.Wall(), Options{})
	st := pageState(t, bin, page, "")
	if st["type"] != "wall" || st.int(t, "frames-drawn") != g.tree.Len() {
		t.Errorf("wall page state %v", st)
	}
	if st = pageState(t, bin, page, "type=offcpu"); st["type"] != "offcpu" {
		t.Errorf("type=offcpu: state %v", st)
	}
	counts := screenshot(t, bin, page, "", filepath.Join(dir, "flamegraph-wall.png"))
	for _, k := range []string{"warm", "offcpu", "offkernel"} {
		if counts[k] < 200 {
			t.Errorf("wall screenshot has %d %s pixels", counts[k], k)
		}
	}

	newer := synth.Known()
	newer.Sample[1].Value = []int64{9, 9 * synth.Period}
	dg, err := newDiffGraph(synth.Known(), newer, DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "flamegraph-diff.html")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := dg.writeHTML(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st := pageState(t, bin, path, ""); st["type"] != "new cpu" || st.int(t, "frames-drawn") != dg.tree.Len() {
		t.Errorf("diff page state %v", st)
	}
	counts = screenshot(t, bin, path, "", filepath.Join(dir, "flamegraph-diff.png"))
	if counts["more"] < 200 || counts["less"] < 200 {
		t.Errorf("diff screenshot: %d red, %d blue pixels", counts["more"], counts["less"])
	}
}

// artifacts returns the directory for screenshots and pages: $EMBER_ARTIFACTS
// if set (kept after the test), else a temporary one.
func artifacts(t *testing.T) string {
	dir := os.Getenv("EMBER_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves a picture of page#fragment to shot and counts its colours.
func screenshot(t *testing.T, bin, page, fragment, shot string) map[string]int {
	t.Helper()
	runChromium(t, bin, "file://"+page+"#"+fragment, "--screenshot="+shot, "--window-size=1200,400")
	t.Logf("screenshot: %s", shot)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	counts := countColours(img)
	t.Logf("pixels: %v", counts)
	return counts
}

// countColours counts pixels of each palette: search highlight, a diff's red
// and blue, on-CPU user (red to yellow) and kernel (tan), off-CPU user (blue)
// and kernel (slate).
func countColours(img image.Image) map[string]int {
	counts := map[string]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			switch {
			case r == 230 && g == 0 && bl == 230:
				counts["highlight"]++
			case r == 255 && g == bl && g < 250:
				counts["more"]++ // diff red (also warm: tested first)
			case bl == 255 && r == g && r < 250:
				counts["less"]++
			case r >= 205 && g >= 30 && g <= 220 && bl <= 55:
				counts["warm"]++
			case r >= 180 && r < 220 && g >= 130 && g < 170 && bl >= 70 && bl < 100:
				counts["kernel"]++
			case r >= 60 && r < 120 && g >= 120 && g < 180 && bl >= 210:
				counts["offcpu"]++
			case r >= 100 && r < 140 && g >= 150 && g < 190 && bl >= 160 && bl < 190:
				counts["offkernel"]++
			}
		}
	}
	return counts
}
