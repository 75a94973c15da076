package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/internal/testutil"
)

// A JIT in its own PID and mount namespaces (unshare --pid --fork --mount,
// a private tmpfs on /tmp) writes /tmp/perf-1.map: PID 1 is the PID it
// sees, and its /tmp is not the host's. Ember finds that map through the
// process's root under the name NSpid gives, and names the JIT frames. A
// symlink or a FIFO planted there instead is refused, said so in the
// summary, and the recording finishes: the JIT frames stay unnamed (the
// symlink leads to a valid map, which must not be read).
func TestPerfMapInNamespaces(t *testing.T) {
	testutil.RequireRoot(t)
	unshare := testutil.RequireTool(t, "unshare")
	dir := t.TempDir()
	bin := testutil.BuildC(t, filepath.Join(dir, "jitmap"), []string{"-O2", "-fno-omit-frame-pointer"}, "jitmap/jitmap.c")
	for _, c := range []struct {
		mode   string
		named  bool
		reason string // in the summary when the map is refused
	}{
		{"regular", true, ""},
		{"symlink", false, "a symlink"},
		{"fifo", false, "a FIFO"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			pid := startJIT(t, unshare, bin, c.mode)
			out := filepath.Join(dir, c.mode+".pb.gz")
			// A deadline only so that a hang fails the test rather than CI.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, emberBin(t), "record", "-F", "499", "-d", "3s", "--pid", strconv.Itoa(pid), "-o", out)
			b, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("ember record did not finish (blocked on the perf map?):\n%s", b)
			}
			if err != nil {
				t.Fatalf("ember record: %v\n%s", err, b)
			}
			stderr := string(b)
			t.Logf("%s", stderr)
			p := readProfile(t, out)
			var total, jit, nsLabelled int64
			for _, s := range p.Sample {
				total += s.Value[0]
				if v := s.NumLabel["ns_pid"]; len(v) == 1 && v[0] == 1 {
					nsLabelled += s.Value[0]
				}
				if leafIs(s, "jit_spin_hot") {
					jit += s.Value[0]
				}
			}
			t.Logf("%d samples, %d with the JIT frame named, %d labelled ns_pid 1", total, jit, nsLabelled)
			if total < 30 {
				t.Fatalf("only %d samples of the JIT", total)
			}
			if nsLabelled != total {
				t.Errorf("%d of %d samples labelled ns_pid=1 (the PID the process sees)", nsLabelled, total)
			}
			if c.named && jit < total*8/10 {
				t.Errorf("JIT frames named in %d of %d samples, want most", jit, total)
			}
			if !c.named {
				if jit != 0 {
					t.Errorf("%d samples named from a %s planted as the perf map", jit, c.mode)
				}
				if !strings.Contains(stderr, "perf-1.map") || !strings.Contains(stderr, c.reason) {
					t.Errorf("the summary does not say the perf map was refused as %s", c.reason)
				}
			}
		})
	}
}

// startJIT starts testdata/jitmap in new PID and mount namespaces with a
// private /tmp, waits until its perf map is in place, and returns its host
// PID.
func startJIT(t *testing.T, unshare, bin, mode string) int {
	t.Helper()
	// The binary's directory stays reachable as the working directory
	// after the tmpfs hides /tmp.
	script := `cd "$1" && mount -t tmpfs tmpfs /tmp && exec ./jitmap 60 "$2"`
	cmd := exec.Command(unshare, "--pid", "--fork", "--mount", "--", "sh", "-c", script, "sh", filepath.Dir(bin), mode)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready 1" {
		t.Fatalf("jitmap %s in new namespaces: %q, %v", mode, line, err)
	}
	// unshare forks the namespace's PID 1, which became jitmap by exec.
	pid := childOf(t, cmd.Process.Pid)
	t.Cleanup(func() { exec.Command("kill", strconv.Itoa(pid)).Run() })
	return pid
}

// childOf returns the one child process of ppid.
func childOf(t *testing.T, ppid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", ppid, ppid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 1 {
		t.Fatalf("process %d has children %q, want one", ppid, f)
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// leafIs reports whether the sample's leaf user frame (the first frame not
// in the kernel) is fn.
func leafIs(s *profile.Sample, fn string) bool {
	for _, loc := range s.Location {
		if loc.Mapping != nil && loc.Mapping.File == "[kernel.kallsyms]" {
			continue
		}
		return len(loc.Line) > 0 && loc.Line[0].Function.Name == fn
	}
	return false
}
