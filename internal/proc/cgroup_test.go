package proc

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emberprof/ember/internal/testutil"
)

// CgroupDir takes a cgroup as /proc/PID/cgroup shows it (relative to the
// cgroup2 mount, with or without a leading slash) or as a full path, and
// refuses what is not a cgroup v2 directory with a sentence naming it.
func TestCgroupDir(t *testing.T) {
	mounts, v1, err := cgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) == 0 {
		testutil.SkipOrFail(t, "no cgroup2 file system mounted")
	}
	mnt := mounts[0]
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "needs root to create a cgroup under %s", mnt)
	}
	dir, err := os.MkdirTemp(mnt, "ember-proc-test-")
	if err != nil {
		testutil.SkipOrFail(t, "cannot create a cgroup v2 under %s: %v", mnt, err)
	}
	defer os.Remove(dir)
	base := filepath.Base(dir)
	for _, in := range []string{dir, "/" + base, base, base + "/"} {
		got, err := CgroupDir(in)
		if err != nil || got != dir {
			t.Errorf("CgroupDir(%q) = %q, %v; want %q", in, got, err, dir)
		}
	}
	if _, err := CgroupDir(base + "-missing"); err == nil || !strings.Contains(err.Error(), "no such cgroup v2 directory") {
		t.Errorf("a missing cgroup: %v", err)
	}
	if v1 {
		// A hybrid host (this one has v1 hierarchies beside cgroup2): a v1
		// directory is named as such, not taken.
		for _, c := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/systemd"} {
			if _, err := os.Stat(c); err != nil {
				continue
			}
			if _, err := CgroupDir(c); err == nil || !strings.Contains(err.Error(), "cgroup v1 hierarchy") {
				t.Errorf("CgroupDir(%q) of a v1 hierarchy: %v", c, err)
			}
			break
		}
	}
}

// On a host with only cgroup v1 hierarchies, --cgroup fails with one
// sentence that says so (ErrCgroupV1Only).
func TestCgroupDirV1Only(t *testing.T) {
	f := filepath.Join(t.TempDir(), "mounts")
	tab := "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n" +
		"cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n" +
		"cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
	if err := os.WriteFile(f, []byte(tab), 0o644); err != nil {
		t.Fatal(err)
	}
	old := mountsFile
	mountsFile = f
	defer func() { mountsFile = old }()
	_, err := CgroupDir("/system.slice")
	if !errors.Is(err, ErrCgroupV1Only) {
		t.Fatalf("CgroupDir on a v1-only host: %v, want ErrCgroupV1Only", err)
	}
	if msg := err.Error(); strings.Contains(msg, ". ") || strings.Contains(msg, "\n") {
		t.Errorf("not one sentence: %q", msg)
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/sys/fs/cgroup/unified`: "/sys/fs/cgroup/unified",
		`/mnt/a\040b`:            "/mnt/a b",
		`/mnt/a\134b\011`:        "/mnt/a\\b\t",
		`/mnt/a\04`:              `/mnt/a\04`,
		`\`:                      `\`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
