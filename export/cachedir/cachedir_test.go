package cachedir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTrim: the least recently used files go first, down to the budget;
// the spared file and the files want refuses stay; a directory emptied by
// a removal goes, root stays.
func TestTrim(t *testing.T) {
	root := t.TempDir()
	at := time.Now().Add(-time.Hour)
	write := func(rel string, size int, age int) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		tm := at.Add(time.Duration(age) * time.Minute)
		if err := os.Chtimes(p, tm, tm); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldest := write("a/old", 100, 0)
	spared := write("b/spared", 100, 1)
	middle := write("c/mid", 100, 2)
	newest := write("d/new", 100, 3)
	other := write("e/other.lock", 1000, 0)
	want := func(p string) bool { return !strings.HasSuffix(p, ".lock") }

	files, total := Scan(root, want)
	if len(files) != 4 || total != 400 {
		t.Fatalf("Scan: %d files, %d bytes; want 4, 400", len(files), total)
	}
	left, n := Trim(root, 200, want, spared)
	if left != 200 || n != 2 {
		t.Errorf("Trim = %d bytes left, %d removed; want 200, 2", left, n)
	}
	for p, keep := range map[string]bool{oldest: false, spared: true, middle: false, newest: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != keep {
			t.Errorf("%s: kept %v, want %v", p, err == nil, keep)
		}
	}
	if _, err := os.Stat(filepath.Dir(oldest)); err == nil {
		t.Error("the emptied directory a/ stayed")
	}
	if _, err := os.Stat(root); err != nil {
		t.Errorf("root: %v", err)
	}
	if left, n := Trim(filepath.Join(root, "missing"), 0, nil, ""); left != 0 || n != 0 {
		t.Errorf("Trim of a missing root = %d, %d", left, n)
	}
}
