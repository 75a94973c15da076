package flamegraph

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/emberprof/ember/export/folded"
	"github.com/emberprof/ember/export/internal/synth"
	"github.com/emberprof/ember/export/stacks"
	"github.com/google/pprof/profile"
)

// pageData is the JSON the page carries, as the script reads it.
type pageData struct {
	pageMeta
	FrameName []int32   `json:"frameName"`
	FrameFile []int32   `json:"frameFile"`
	FrameKind []int32   `json:"frameKind"`
	Frame     []int32   `json:"frame"`
	Depth     []int32   `json:"depth"`
	Line      []int64   `json:"line"`
	Values    [][]int64 `json:"values"`
}

var dataRE = regexp.MustCompile(`(?s)<script id="ember-data" type="application/json">(.*?)</script>`)

func readPage(t *testing.T, page []byte) *pageData {
	t.Helper()
	m := dataRE.FindSubmatch(page)
	if m == nil {
		t.Fatal("page has no ember-data script")
	}
	var d pageData
	if err := json.Unmarshal(m[1], &d); err != nil {
		t.Fatalf("page data: %v", err)
	}
	return &d
}

func (d *pageData) name(node int) string {
	f := d.Frame[node]
	return folded.Name(stacks.Frame{Name: d.Strings[d.FrameName[f]]}, false)
}

func (d *pageData) column(c int) []int64 {
	out := make([]int64, len(d.Values[c]))
	for i, v := range d.Values[c] {
		out[i] = v * d.Types[c].Scale
	}
	return out
}

func writePage(t *testing.T, p *profile.Profile, opts Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteHTML(&buf, p, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestHTMLDataMatchesProfile folds the page's tree back into stacks and
// compares them with the profile's own folded stacks, for every sample type.
func TestHTMLDataMatchesProfile(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    *profile.Profile
	}{
		{"known", synth.Known()},
		{"wall", synth.Wall()},
		{"generated", synth.Generate(5000, 11)},
	} {
		page := writePage(t, tc.p, Options{ProcessRoot: true})
		d := readPage(t, page)
		if len(d.Types) != len(tc.p.SampleType) {
			t.Fatalf("%s: %d types in page", tc.name, len(d.Types))
		}
		set, err := stacks.FromProfile(tc.p, stacks.Options{ProcessRoot: true})
		if err != nil {
			t.Fatal(err)
		}
		for c, vt := range tc.p.SampleType {
			if d.Types[c].Name != vt.Type || d.Types[c].Unit != vt.Unit {
				t.Errorf("%s: type %d = %+v", tc.name, c, d.Types[c])
			}
			got := foldTree(d.name, d.Depth, d.column(c))
			if want := foldedOf(t, set, c); got != want {
				t.Errorf("%s type %s: page folds to\n%.1500s\nwant\n%.1500s", tc.name, vt.Type, got, want)
			}
		}
		if d.Default != len(tc.p.SampleType)-1 {
			t.Errorf("%s: default type %d", tc.name, d.Default)
		}
	}
}

func TestHTMLKnownDetails(t *testing.T) {
	page := writePage(t, synth.Known(), Options{Title: "a </script> title"})
	d := readPage(t, page)
	if d.Title != "a </script> title" {
		t.Errorf("title %q", d.Title)
	}
	// cpu/nanoseconds values are stored in units of the sampling period.
	if d.Types[1].Scale != synth.Period || d.Values[1][0] != 15 {
		t.Errorf("cpu scale %d, root %d; want %d, 15", d.Types[1].Scale, d.Values[1][0], synth.Period)
	}
	kinds := map[string]int32{}
	files := map[string]string{}
	lines := map[string]int64{}
	for i := range d.Frame {
		f := d.Frame[i]
		n := d.Strings[d.FrameName[f]]
		kinds[n] = d.FrameKind[f]
		if d.FrameFile[f] >= 0 {
			files[n] = d.Strings[d.FrameFile[f]]
		}
		lines[n] = d.Line[i]
	}
	for n, k := range map[string]stacks.Kind{"vfs_read": stacks.Kernel, "ksys_read": stacks.Kernel, "read": stacks.User, "helper": stacks.User, "all": stacks.Process} {
		if kinds[n] != int32(k) {
			t.Errorf("kind of %s = %d, want %d", n, kinds[n], k)
		}
	}
	if files["helper"] != "helper.h" || lines["helper"] != 7 || files["vfs_read"] != "fs/read_write.c" {
		t.Errorf("helper at %s:%d, vfs_read in %s", files["helper"], lines["helper"], files["vfs_read"])
	}
}

// TestHTMLSelfContained checks that the page names nothing to fetch.
func TestHTMLSelfContained(t *testing.T) {
	page := string(writePage(t, synth.Known(), Options{}))
	for _, bad := range []string{"http://", "https://", "src=", "href=", "@import", "url(", "fetch(", "XMLHttpRequest"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if strings.Count(page, "</script>") != 2 {
		t.Errorf("page has %d </script>, want 2", strings.Count(page, "</script>"))
	}
	if !strings.Contains(page, "default-src 'none'") {
		t.Errorf("page lacks its content security policy")
	}
}

func TestHTMLSize(t *testing.T) {
	page := writePage(t, synth.Generate(10000, 5), Options{})
	d := readPage(t, page)
	perNode := float64(len(page)) / float64(len(d.Frame))
	t.Logf("10k stacks: %d nodes, %d bytes, %.1f bytes/node", len(d.Frame), len(page), perNode)
	if perNode > 40 {
		t.Errorf("%.1f bytes per node: data not compact", perNode)
	}
}

func TestHTMLNotes(t *testing.T) {
	p := synth.Known()
	p.Comments = []string{"ember: 3 stack collisions"}
	d := readPage(t, writePage(t, p, Options{}))
	got := strings.Join(d.Notes, " | ")
	for _, want := range []string{"2023-11-14 22:13:20 UTC", "duration 10s", "period 10.10101ms of cpu", "ember: 3 stack collisions"} {
		if !strings.Contains(got, want) {
			t.Errorf("notes %q lack %q", got, want)
		}
	}
}
