package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/internal/testutil"
)

// The capabilities README.md and deploy/ document for running Ember as a
// user other than root, in setpriv's spelling.
var documentedCaps = []string{"bpf", "perfmon", "syslog", "sys_ptrace", "checkpoint_restore", "dac_read_search"}

// nobody is the unprivileged user the test runs Ember as.
const nobody = "65534"

// Ember run as nobody with exactly the documented capabilities profiles as
// root does: kernel frames named (of a dd in system calls), and user stacks as complete and as named
// as under root, for three root-owned workloads that each need one of the
// capabilities (another user's process: CAP_SYS_PTRACE; a binary only root
// may read: CAP_DAC_READ_SEARCH; a binary deleted while it runs:
// CAP_CHECKPOINT_RESTORE). Without any one of them, Ember says which frames
// are lost.
func TestRecordWithDocumentedCapabilities(t *testing.T) {
	testutil.RequireRoot(t)
	setpriv := testutil.RequireTool(t, "setpriv")
	dir := t.TempDir()
	// nobody must reach the binary and write the profile.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	ember := filepath.Join(dir, "ember")
	copyFile(t, emberBin(t), ember, 0o755)
	bin := buildCPUSplit(t, dir)
	work := map[string]string{
		"other-user": filepath.Join(dir, "cpusplit-other"),
		"owner-only": filepath.Join(dir, "cpusplit-owner-only"),
		"deleted":    filepath.Join(dir, "cpusplit-deleted"),
	}
	copyFile(t, bin, work["other-user"], 0o755)
	copyFile(t, bin, work["owner-only"], 0o700)
	copyFile(t, bin, work["deleted"], 0o755)
	pids := map[string]int64{}
	var pidArgs []string
	for name, path := range work {
		c := exec.Command(path, "120")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		pids[name] = int64(c.Process.Pid)
		pidArgs = append(pidArgs, "--pid", strconv.Itoa(c.Process.Pid))
	}
	// cpusplit spins in user space, where a sample has kernel frames only
	// by chance (an interrupt's); dd of single bytes is mostly in read
	// and write, so that kernel frames are there to be named.
	dd := exec.Command(testutil.RequireTool(t, "dd"), "if=/dev/zero", "of=/dev/null", "bs=1")
	if err := dd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dd.Process.Kill(); dd.Wait() })
	pidArgs = append(pidArgs, "--pid", strconv.Itoa(dd.Process.Pid))
	if err := os.Remove(work["deleted"]); err != nil {
		t.Fatal(err)
	}

	record := func(name string, caps []string, seconds string) (string, *profile.Profile) {
		out := filepath.Join(dir, name+".pb.gz")
		args := append([]string{"record", "-F", "499", "-d", seconds, "-o", out}, pidArgs...)
		var cmd *exec.Cmd
		if caps == nil {
			cmd = exec.Command(ember, args...)
		} else {
			set := "-all"
			for _, c := range caps {
				set += ",+" + c
			}
			cmd = exec.Command(setpriv, append([]string{"--reuid=" + nobody, "--regid=" + nobody, "--clear-groups",
				"--inh-caps=" + set, "--ambient-caps=" + set, "--", ember}, args...)...)
		}
		cmd.Dir = dir
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: ember record: %v\n%s", name, err, b)
		}
		t.Logf("%s:\n%s", name, b)
		return string(b), readProfile(t, out)
	}

	_, asRoot := record("root", nil, "3s")
	stderr, asNobody := record("nobody", documentedCaps, "3s")
	if strings.Contains(stderr, "without CAP_") {
		t.Errorf("with the documented capabilities, Ember still says something is lost:\n%s", stderr)
	}
	named, unnamed := kernelFrames(asNobody)
	t.Logf("kernel frames as nobody: %d named, %d unnamed", named, unnamed)
	if named == 0 || unnamed > 0 {
		t.Errorf("kernel frames as nobody: %d named, %d not: want all named", named, unnamed)
	}
	for name, pid := range pids {
		r, rn := completeShare(asRoot, pid)
		u, un := completeShare(asNobody, pid)
		t.Logf("%s (pid %d): complete, named user stacks %.3f of %d samples as root, %.3f of %d as nobody", name, pid, r, rn, u, un)
		if rn < 50 || un < 50 {
			t.Fatalf("%s: %d samples as root, %d as nobody: too few to compare", name, rn, un)
		}
		if u < r-0.05 {
			t.Errorf("%s: user stacks complete in %.3f of samples as nobody, %.3f as root", name, u, r)
		}
	}

	// One capability short, Ember says what is lost. (CAP_SYSLOG is needed
	// only where /proc/kallsyms hides addresses; this host's setting
	// decides.)
	for _, drop := range []string{"sys_ptrace", "checkpoint_restore", "dac_read_search"} {
		var caps []string
		for _, c := range documentedCaps {
			if c != drop {
				caps = append(caps, c)
			}
		}
		stderr, _ := record("without-"+drop, caps, "1s")
		if want := "without CAP_" + strings.ToUpper(drop) + ", "; !strings.Contains(stderr, want) {
			t.Errorf("without %s, Ember does not say what is lost (want %q)", drop, want)
		}
	}
}

// completeShare returns the share of pid's samples whose user stack is whole
// and named: main and spin are there and no pseudo-frame says a stack was
// lost or cut; and the number of pid's samples.
func completeShare(p *profile.Profile, pid int64) (float64, int64) {
	var total, complete int64
	for _, s := range p.Sample {
		if s.NumLabel["pid"][0] != pid {
			continue
		}
		total += s.Value[0]
		frames := testutil.Frames(s)
		whole := slices.Contains(frames, "spin") && slices.Contains(frames, "main")
		for _, f := range frames {
			whole = whole && !strings.HasPrefix(f, "[")
		}
		if whole {
			complete += s.Value[0]
		}
	}
	if total == 0 {
		return 0, 0
	}
	return float64(complete) / float64(total), total
}

// kernelFrames counts kernel locations with and without a name.
func kernelFrames(p *profile.Profile) (named, unnamed int) {
	for _, loc := range p.Location {
		if loc.Mapping == nil || loc.Mapping.File != "[kernel.kallsyms]" {
			continue
		}
		if len(loc.Line) > 0 && loc.Line[0].Function != nil && loc.Line[0].Function.Name != "" {
			named++
		} else {
			unnamed++
		}
	}
	return named, unnamed
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(fmt.Errorf("copy %s: %w", from, err))
	}
	if err := os.Chmod(to, mode); err != nil {
		t.Fatal(err)
	}
}
