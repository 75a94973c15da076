package tracer

import (
	"testing"
	"time"

	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/testutil"
)

// TestWalkerSwappedIn: a whole-system on-CPU tracer samples with the
// frame-pointer program while the table walker is verified, and from the
// end of Start on with the walker only (swapInTableWalker): ticks after
// Start run on_cpu_sample and no longer on_cpu_sample_fp.
func TestWalkerSwappedIn(t *testing.T) {
	testutil.RequireRoot(t)
	if err := Preflight(""); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	if !samplerLater() {
		t.Skip("the kernel lacks bpf_loop: the table walker is refused before sampling starts, nothing is swapped")
	}
	st, err := EnableProgramStats()
	if err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	defer st.Close()
	tr, err := Start(Config{OnCPU: true, Frequency: 999}, proc.NewTable())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if m := tr.UnwindMode(); m != UnwindTables {
		t.Fatalf("unwind mode %q, want tables", m)
	}
	runs := func() (fp, walker uint64, both bool) {
		n := 0
		for _, p := range tr.ProgramStats() {
			switch p.Name {
			case "on_cpu_sample_fp":
				fp, n = p.Runs, n+1
			case "on_cpu_sample":
				walker, n = p.Runs, n+1
			}
		}
		return fp, walker, n == 2
	}
	fp0, w0, both := runs()
	if !both {
		t.Fatalf("programs %v: want on_cpu_sample_fp and on_cpu_sample", tr.ProgramStats())
	}
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
	fp1, w1, _ := runs()
	t.Logf("runs during 300 ms of spinning: walker %d, frame-pointer program %d", w1-w0, fp1-fp0)
	if w1 == w0 {
		t.Error("the table walker did not run after Start")
	}
	if fp1 != fp0 {
		t.Errorf("the frame-pointer program ran %d times after Start: its events were not moved", fp1-fp0)
	}
}
