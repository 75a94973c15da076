package output

import (
	"bytes"
	"io"
	"testing"

	"github.com/emberprof/ember/export/internal/synth"
	"github.com/google/pprof/profile"
)

// FuzzWrite feeds arbitrary pprof data to every writer: whatever pprof's
// parser accepts must be written or refused with an error, never panic.
func FuzzWrite(f *testing.F) {
	for _, p := range []*profile.Profile{synth.Known(), synth.Wall(), synth.Generate(20, 1)} {
		var buf bytes.Buffer
		if err := p.WriteUncompressed(&buf); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := profile.ParseData(data)
		if err != nil {
			return
		}
		for _, form := range []Format{HTML, SVG, Folded} {
			Write(io.Discard, form, p, Options{})
		}
		if len(p.SampleType) > 0 {
			WriteDiffFile(t.TempDir()+"/d.svg", p, p, DiffOptions{})
		}
	})
}
