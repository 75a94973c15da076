package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/emberprof/ember/internal/testutil"
)

// A stack map far too small must show its collisions: in the summary, in the
// profile's comments, and as lost-stack frames in the profile itself.
func TestStackCollisionsCounted(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := testutil.BuildC(t, filepath.Join(dir, "manystacks"), []string{"-O1", "-fno-omit-frame-pointer", "-fno-optimize-sibling-calls"}, "manystacks/manystacks.c")
	out := filepath.Join(dir, "m.pb.gz")
	// Frame pointers: table walks keep user stacks in a hash map, not this one.
	stderr := runEmber(t, dir, "record", "-F", "997", "--unwind", "fp", "--stack-map-size", "32", "-o", out, "--", bin, "3")
	m := regexp.MustCompile(`user_stack_collision=(\d+)`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("summary has no user_stack_collision counter:\n%s", stderr)
	}
	n, _ := strconv.Atoi(m[1])
	if n == 0 {
		t.Fatalf("no collisions counted with a 32-entry stack map:\n%s", stderr)
	}
	p := readProfile(t, out)
	if !strings.Contains(strings.Join(p.Comments, "\n"), "user_stack_collision="+m[1]) {
		t.Errorf("profile comments lack the collision count %s: %v", m[1], p.Comments)
	}
	var lost int64
	for _, s := range p.Sample {
		for _, f := range testutil.Frames(s) {
			if strings.Contains(f, "stack lost: stack map bucket collision") {
				lost += s.Value[0]
			}
		}
	}
	t.Logf("%d collisions counted, %d samples carry the lost-stack frame", n, lost)
	if lost == 0 {
		t.Error("no sample carries a lost-stack frame")
	}
}

// Without privileges record fails with one sentence naming what is missing,
// exits non-zero, and writes nothing.
func TestRecordWithoutPrivileges(t *testing.T) {
	testutil.RequireRoot(t) // to drop to nobody
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	out := filepath.Join(dir, "never.pb.gz")
	bin := emberBin(t)
	os.Chmod(filepath.Dir(bin), 0o755)
	cmd := exec.Command(bin, "record", "-d", "1s", "-o", out)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		t.Fatal("record as nobody succeeded")
	}
	msg := strings.TrimSpace(stderr.String())
	t.Logf("exit %v: %s", err, msg)
	if strings.Count(msg, "\n") != 0 || !strings.Contains(msg, "CAP_BPF") {
		t.Errorf("want one sentence naming CAP_BPF, got %q", msg)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("an output file was written")
	}
}
