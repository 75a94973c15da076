package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// burnCPU spins for d so that a CPU profile has something to show.
//
//go:noinline
func burnCPU(d time.Duration) int {
	n := 0
	for start := time.Now(); time.Since(start) < d; {
		for i := 0; i < 100000; i++ {
			n += i * i
		}
	}
	return n
}

// goProfile writes a real CPU profile of this test process, as any Go
// program's runtime/pprof writes it, and returns its path.
func goProfile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "go.pprof")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	burnCPU(400 * time.Millisecond)
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func run(t *testing.T, args ...string) error {
	t.Helper()
	rootCmd.SetArgs(args)
	return rootCmd.Execute()
}

func TestFlamegraphCommandGoProfile(t *testing.T) {
	prof := goProfile(t)
	dir := t.TempDir()
	for _, ext := range []string{".folded", ".svg", ".html"} {
		out := filepath.Join(dir, "go"+ext)
		if err := run(t, "flamegraph", prof, "-o", out, "--sample-type", "cpu"); err != nil {
			t.Fatalf("flamegraph -o %s: %v", out, err)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte("ember.burnCPU")) {
			t.Errorf("%s does not show burnCPU:\n%.3000s", out, data)
		}
	}
	folded, _ := os.ReadFile(filepath.Join(dir, "go.folded"))
	for _, line := range strings.Split(strings.TrimSpace(string(folded)), "\n") {
		if strings.Contains(line, "ember.burnCPU") && !strings.HasPrefix(line, "runtime.goexit;") && !strings.HasPrefix(line, "testing.tRunner;") {
			t.Errorf("folded line not root first: %s", line)
		}
	}

	out := filepath.Join(dir, "diff.html")
	if err := run(t, "diff", prof, prof, "-o", out); err != nil {
		t.Fatalf("diff: %v", err)
	}
	if err := run(t, "flamegraph", prof, "-o", filepath.Join(dir, "go.png")); err == nil || !strings.Contains(err.Error(), ".svg") {
		t.Errorf("unsupported extension: %v", err)
	}
	if err := run(t, "flamegraph", filepath.Join(dir, "missing.pprof"), "-o", filepath.Join(dir, "x.svg")); err == nil {
		t.Errorf("missing profile: no error")
	}
}
