package flamegraph

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"github.com/emberprof/ember/export/internal/synth"
	"github.com/google/pprof/profile"
)

// changed is synth.Known with compute's own time tripled (3 to 9 samples):
// 21 samples instead of 15.
func changed() *profile.Profile {
	p := synth.Known()
	p.Sample[1].Value = []int64{9, 9 * synth.Period}
	return p
}

func nodeByPath(g *graph, path ...string) int {
	t := g.tree
	i := 0
	for _, name := range path {
		found := false
		for j := i + 1; j < t.End(i); j = t.End(j) {
			if t.Frames[t.Frame[j]].Name == name {
				i, found = j, true
				break
			}
		}
		if !found {
			return -1
		}
	}
	return i
}

func TestDiffGraph(t *testing.T) {
	for _, normalize := range []bool{true, false} {
		g, err := newDiffGraph(synth.Known(), changed(), DiffOptions{NoNormalize: !normalize, Options: Options{SampleType: "samples"}})
		if err != nil {
			t.Fatal(err)
		}
		base, now := g.tree.Values[0], g.tree.Values[1]
		if now[0] != 21 {
			t.Errorf("new total %d, want 21", now[0])
		}
		wantBase := int64(15)
		if normalize {
			wantBase = 21
		}
		// Per-stack rounding of 1.4 x (5, 3, 2, 1, 4) = 7, 4, 3, 1, 6 -> 21.
		if base[0] != wantBase {
			t.Errorf("normalize=%v: base total %d, want %d", normalize, base[0], wantBase)
		}
		// Colours follow the change of each frame's own time: compute's
		// self time grew most (full red); vfs_read's self time shrank
		// after normalisation; read has no self time (white).
		compute := nodeByPath(g, "main", "run", "compute")
		read := nodeByPath(g, "main", "run", "read")
		vfs := nodeByPath(g, "main", "run", "read", "entry_SYSCALL_64", "ksys_read", "vfs_read")
		if compute < 0 || read < 0 || vfs < 0 {
			t.Fatal("nodes not found")
		}
		if c := g.nodeColour(compute, 1); c != (rgb{255, 45, 45}) {
			t.Errorf("compute (%d -> %d) coloured %v, want full red", base[compute], now[compute], c)
		}
		if c := g.nodeColour(read, 1); c != (rgb{255, 255, 255}) {
			t.Errorf("read coloured %v, want white", c)
		}
		if normalize {
			if c := g.nodeColour(vfs, 1); c.b != 255 || c.r >= 255 {
				t.Errorf("vfs_read (%d -> %d) coloured %v, want blue", base[vfs], now[vfs], c)
			}
		}
	}
}

func TestDiffGraphUnchangedIsWhite(t *testing.T) {
	g, err := newDiffGraph(synth.Known(), synth.Known(), DiffOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < g.tree.Len(); i++ {
		if c := g.nodeColour(i, 1); c != (rgb{255, 255, 255}) {
			t.Fatalf("node %d of an unchanged profile coloured %v", i, c)
		}
	}
}

func TestDiffSVGAndHTML(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteDiffSVG(&buf, synth.Known(), changed(), DiffOptions{}); err != nil {
		t.Fatal(err)
	}
	_, frames := parseSVG(t, buf.Bytes())
	var red, blue int
	for _, f := range frames {
		var c rgb
		if _, err := fmt.Sscanf(f.Rect.Fill, "rgb(%d,%d,%d)", &c.r, &c.g, &c.b); err != nil {
			t.Fatal(err)
		}
		switch {
		case c.r == 255 && c.g < 255:
			red++
		case c.b == 255 && c.r < 255:
			blue++
		}
		if f.name == "compute" && !(c.r == 255 && c.g < 255) {
			t.Errorf("compute frame %s not red", f.Rect.Fill)
		}
	}
	if red == 0 || blue == 0 {
		t.Errorf("%d red and %d blue frames", red, blue)
	}

	buf.Reset()
	if err := WriteDiffHTML(&buf, synth.Known(), changed(), DiffOptions{}); err != nil {
		t.Fatal(err)
	}
	d := readPage(t, buf.Bytes())
	if !d.Diff || len(d.Types) != 2 || d.Types[0].Name != "base cpu" || d.Types[1].Name != "new cpu" || d.Default != 1 {
		t.Errorf("diff page meta %+v", d.pageMeta)
	}
	b, n := d.column(0)[0], d.column(1)[0]
	if math.Abs(float64(b-n)) > float64(synth.Period) {
		t.Errorf("normalised base total %d, new %d", b, n)
	}
}

func TestDiffMismatchedTypes(t *testing.T) {
	_, err := newDiffGraph(synth.Known(), synth.Wall(), DiffOptions{}) // base has no wall type
	if err == nil {
		t.Fatal("no error comparing a profile without the sample type")
	}
	empty := synth.Known()
	empty.Sample = nil
	if _, err := newDiffGraph(empty, synth.Known(), DiffOptions{}); err == nil {
		t.Fatal("no error normalising by an empty base")
	}
}
