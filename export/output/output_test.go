package output

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emberprof/ember/export/internal/synth"
	"github.com/google/pprof/profile"
)

func TestWriteFileForms(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		check func(t *testing.T, data []byte)
	}{
		{"run.pb.gz", func(t *testing.T, data []byte) {
			p, err := profile.ParseData(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Sample) != len(synth.Known().Sample) {
				t.Errorf("%d samples after round trip", len(p.Sample))
			}
			if data[0] != 0x1f || data[1] != 0x8b {
				t.Errorf("not gzipped")
			}
		}},
		{"run.pprof", func(t *testing.T, data []byte) {
			if _, err := profile.ParseData(data); err != nil {
				t.Fatal(err)
			}
		}},
		{"run.folded", func(t *testing.T, data []byte) {
			if !bytes.Contains(data, []byte("app;main;run;compute;helper 50505050\n")) {
				t.Errorf("folded output lacks the process-rooted cpu line:\n%s", data)
			}
		}},
		{"run.TXT", func(t *testing.T, data []byte) {
			if !bytes.HasPrefix(data, []byte("app;main;")) {
				t.Errorf("txt output is not folded:\n%s", data)
			}
		}},
		{"run.svg", func(t *testing.T, data []byte) {
			if !bytes.Contains(data, []byte("<svg ")) || !bytes.Contains(data, []byte("compute")) {
				t.Errorf("not an SVG flame graph")
			}
		}},
		{"run.html", func(t *testing.T, data []byte) {
			if !bytes.HasPrefix(data, []byte("<!DOCTYPE html>")) || !bytes.Contains(data, []byte(`"compute"`)) {
				t.Errorf("not an HTML flame graph")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := Supported(path); err != nil {
				t.Fatal(err)
			}
			if err := WriteFile(path, synth.Known(), Options{Title: "test"}); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, data)
		})
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind %s", e.Name())
		}
	}
}

func TestUnsupported(t *testing.T) {
	for _, name := range []string{"run.png", "run", "out/.svg", "run.gz"} {
		err := Supported(name)
		if !errors.Is(err, ErrFormat) {
			t.Errorf("Supported(%q) = %v, want ErrFormat", name, err)
			continue
		}
		if !strings.Contains(err.Error(), ".html") || !strings.Contains(err.Error(), ".pb.gz") {
			t.Errorf("error %q does not name the supported extensions", err)
		}
	}
	path := filepath.Join(t.TempDir(), "run.png")
	if err := WriteFile(path, synth.Known(), Options{}); !errors.Is(err, ErrFormat) {
		t.Errorf("WriteFile(.png) = %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("unsupported name was created")
	}
}

func TestBadSampleTypeLeavesNoFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.svg")
	if err := WriteFile(path, synth.Known(), Options{SampleType: "alloc"}); err == nil {
		t.Fatal("no error for an unknown sample type")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("file written despite the error")
	}
}

func TestWriteDiffFile(t *testing.T) {
	dir := t.TempDir()
	newer := synth.Known()
	newer.Sample[1].Value = []int64{9, 9 * synth.Period}
	for _, name := range []string{"d.html", "d.svg", "d.folded", "d.pb.gz"} {
		path := filepath.Join(dir, name)
		if err := WriteDiffFile(path, synth.Known(), newer, DiffOptions{}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, "d.folded"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("app;main;run;compute 42424242 90909090\n")) {
		t.Errorf("diff folded:\n%s", data)
	}
	// The pprof form: new minus normalised base sums to zero per type.
	d, err := ReadProfile(filepath.Join(dir, "d.pb.gz"))
	if err != nil {
		t.Fatal(err)
	}
	var sum, bases [2]int64
	for _, s := range d.Sample {
		for i := range sum {
			sum[i] += s.Value[i]
		}
		if s.Label["pprof::base"] != nil {
			bases[0]++
		}
	}
	if bases[0] != int64(len(synth.Known().Sample)) {
		t.Errorf("%d base samples", bases[0])
	}
	if sum[0] < -2 || sum[0] > 2 || sum[1] < -2*synth.Period || sum[1] > 2*synth.Period {
		t.Errorf("normalised diff sums to %v, want about 0", sum)
	}
}

func TestReadProfileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pb.gz")
	os.WriteFile(bad, []byte("\x1f\x8b not really gzip"), 0o644)
	if _, err := ReadProfile(bad); err == nil || !strings.Contains(err.Error(), "bad.pb.gz") {
		t.Errorf("ReadProfile(garbage) = %v", err)
	}
	if _, err := ReadProfile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadProfile(missing) = %v", err)
	}
}
