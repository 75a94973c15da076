package tracer

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/emberprof/ember/internal/testutil"
)

// requireBPF skips (or, under EMBER_REQUIRE_BPF=1, fails) a test that loads
// the BPF programs where they cannot be loaded.
func requireBPF(tb testing.TB) {
	tb.Helper()
	testutil.RequireRoot(tb)
	if err := Preflight(""); err != nil {
		testutil.SkipOrFail(tb, "%v", err)
	}
}

// startChain builds testdata/unwind/chain.c with flags and runs it for
// seconds; the process is killed and reaped when the test ends.
func startChain(t *testing.T, seconds string, flags ...string) *exec.Cmd {
	t.Helper()
	bin := testutil.BuildC(t, filepath.Join(t.TempDir(), "chain"), flags, "unwind/chain.c")
	w := exec.Command(bin, seconds)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Process.Kill(); w.Wait() })
	return w
}
