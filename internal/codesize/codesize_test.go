package codesize

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emberprof/ember/internal/testutil"
)

const (
	maxFileLines = 600
	maxBPFLines  = 80
)

// generated reports whether a file is written by a tool, not by hand.
func generated(name string) bool {
	return strings.HasSuffix(name, "_bpfel.go") || strings.HasSuffix(name, "_bpfeb.go") || name == "vmlinux.h"
}

// sources walks the repository for hand-written Go and C files, skipping
// build output and hidden directories (.git, .ci's caches).
func sources(t *testing.T) []string {
	t.Helper()
	root := testutil.RepoRoot()
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "build" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(name) {
		case ".go", ".c", ".h":
			if !generated(name) {
				files = append(files, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	if len(files) == 0 {
		t.Fatalf("no source files under %s", root)
	}
	return files
}

func TestFileLengths(t *testing.T) {
	for _, path := range sources(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(data), "\n"); n > maxFileLines {
			rel, _ := filepath.Rel(testutil.RepoRoot(), path)
			t.Errorf("%s: %d lines, more than %d: split it by job", rel, n, maxFileLines)
		}
	}
}

func TestBPFFunctionLengths(t *testing.T) {
	dir := filepath.Join(testutil.RepoRoot(), "bpf")
	paths, err := filepath.Glob(filepath.Join(dir, "*.[ch]"))
	if err != nil {
		t.Fatal(err)
	}
	seen, longest := 0, cFunction{}
	for _, path := range paths {
		if generated(filepath.Base(path)) {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, fn := range cFunctions(string(data)) {
			seen++
			if fn.lines > longest.lines {
				longest = fn
			}
			if fn.lines > maxBPFLines {
				t.Errorf("%s: %s is %d lines, more than %d: split it into its steps",
					filepath.Base(path), fn.name, fn.lines, maxBPFLines)
			}
		}
	}
	t.Logf("%d BPF functions; the longest is %s, %d lines", seen, longest.name, longest.lines)
	if seen < 10 {
		t.Fatalf("found only %d functions in %s: the scanner no longer reads the programs", seen, dir)
	}
}

func TestCFunctions(t *testing.T) {
	src := `#include "x.h"
#define LONG(a) \
	{ a }
struct s { int a; };        /* { not a function */
static const char *msg = "} {";
static __always_inline int
add(int a, int b)
{
	// } a brace in a comment
	if (a) {
		return a + b;
	}
	return '}';
}

SEC("perf_event")
int on_cpu(void *ctx) { return 0; }
enum e { A, B };
`
	got := cFunctions(src)
	want := []cFunction{{name: "add", lines: 8}, {name: "on_cpu", lines: 1}}
	if len(got) != len(want) {
		t.Fatalf("cFunctions = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("function %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
