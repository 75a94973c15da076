package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/internal/testutil"
)

// preExecRuns is how many children TestFirstSamplesBeforeExec forks; each
// runs preExecMS in its parent's code before it execs.
const (
	preExecRuns = 50
	preExecMS   = 20
)

// A fork child sampled before its exec (issue #15), as a shell's child
// runs the shell's code before it execs the command: its samples carry the
// parent program's addresses, but the profile is built after the exec,
// when the process runs another image. They must name the parent's
// functions (the image before the exec is kept for them), and no sample of
// these processes may have a frame outside every known mapping without a
// marker. Recorded
// whole-system; testdata/first/forkexec.c, built without frame pointers,
// forks 50 children that each run 20 ms of CPU time in prelude <- child <- main and
// then exec testdata/first/short.c for 5 ms.
func TestFirstSamplesBeforeExec(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	flags := []string{"-O2", "-g", "-fomit-frame-pointer"}
	forker := testutil.BuildC(t, filepath.Join(dir, "forkexec"), flags, "first/forkexec.c")
	short := testutil.BuildC(t, filepath.Join(dir, "short"), flags, "first/short.c")
	out := filepath.Join(dir, "forkexec.pb.gz")
	rec, stderr := startRecording(t, dir, "-F", "99", "-o", out)
	children := map[int64]bool{}
	for i := 0; i < preExecRuns; i++ {
		b, err := exec.Command(forker, strconv.Itoa(preExecMS), short, "5").Output()
		if err != nil {
			t.Fatalf("%s: %v", forker, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			pid, err := strconv.ParseInt(sc.Text(), 10, 64)
			if err != nil {
				t.Fatalf("%s printed %q: %v", forker, b, err)
			}
			children[pid] = true
		}
	}
	stopRecording(t, rec, stderr)
	p := readProfile(t, out)
	idx := testutil.SampleIndex(p, "samples")
	chain := []string{"prelude", "child", "main"}
	var whole, before, after int64
	for _, s := range p.Sample {
		pid := s.NumLabel["pid"]
		if len(pid) != 1 || !children[pid[0]] {
			continue
		}
		frames := testutil.Frames(s)
		named, marked := true, false
		for _, f := range frames {
			named = named && !strings.HasPrefix(f, "<unknown")
			marked = marked || strings.HasPrefix(f, "[")
		}
		// The loss this test is about: addresses read against an image
		// that does not map them (a frame with no mapping), unmarked.
		if unmapped := slices.ContainsFunc(s.Location, func(l *profile.Location) bool {
			return l.Mapping == nil && len(l.Line) == 0
		}); unmapped && !marked {
			t.Errorf("pid %d: frames outside every known mapping without a marker: %s", pid[0], strings.Join(frames, " <- "))
		}
		complete, hot := hasChain(frames, chain)
		switch {
		case complete && named && !marked:
			whole += s.Value[idx]
		case hot:
			before += s.Value[idx]
			t.Logf("pid %d: %s", pid[0], strings.Join(frames, " <- "))
		default:
			after += s.Value[idx]
		}
	}
	// 50 children × 20 ms at 99 Hz: about 99 samples in prelude's chain.
	t.Logf("%d samples of %d children carry %v whole and named before their exec, %d more in %s with frames lost (marked), %d elsewhere",
		whole, len(children), chain, before, chain[0], after)
	if want := int64(preExecRuns * preExecMS * 99 / 1000 / 2); whole < want {
		t.Errorf("%d samples carry the chain %v before the exec, want at least %d (half of 50 × 20 ms at 99 Hz)", whole, chain, want)
	}
}
