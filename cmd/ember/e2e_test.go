package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/internal/testutil"
)

var (
	emberOnce sync.Once
	emberPath string
	emberErr  error
)

// emberBin builds the ember command once per test binary, or returns
// $EMBER_BIN: the kernel matrix (cmd/emberkernels) runs this test binary in
// qemu guests without Go, with an ember built beforehand.
func emberBin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("EMBER_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("EMBER_BIN=%s: %v", p, err)
		}
		return p
	}
	emberOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ember-e2e-")
		if err != nil {
			emberErr = err
			return
		}
		emberPath = filepath.Join(dir, "ember")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", emberPath, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			emberErr = err
			emberPath = string(out)
		}
	})
	if emberErr != nil {
		t.Fatalf("build ember: %v\n%s", emberErr, emberPath)
	}
	return emberPath
}

// runEmber runs ember with args and returns its stderr; it fails the test
// if ember fails.
func runEmber(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(emberBin(t), args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = os.Stdout
	if err := cmd.Run(); err != nil {
		t.Fatalf("ember %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	t.Logf("ember %s:\n%s", strings.Join(args, " "), stderr.String())
	return stderr.String()
}

func readProfile(t *testing.T, name string) *profile.Profile {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return p
}

// checkShares asserts inclusive shares of CPU time within tol of want, with at
// least minSamples samples behind them.
func checkShares(t *testing.T, p *profile.Profile, keep func(*profile.Sample) bool, want map[string]float64, tol float64, minSamples int64) map[string]float64 {
	t.Helper()
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	idx := testutil.SampleIndex(p, "samples")
	got, total := testutil.Inclusive(p, idx, keep, names...)
	t.Logf("%d samples; inclusive shares %v (want %v ± %.0f pp)", total, got, want, tol*100)
	if total < minSamples {
		t.Fatalf("only %d samples, want at least %d for an honest tolerance", total, minSamples)
	}
	for n, w := range want {
		if d := got[n] - w; d > tol || d < -tol {
			t.Errorf("%s: inclusive share %.3f, want %.3f ± %.3f", n, got[n], w, tol)
		}
	}
	return got
}
