package proc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/internal/testutil"
)

// helperEnv makes the test binary a helper process that sleeps: started
// chrooted in a new PID namespace, it is a containerised process whose root
// is not the host's and whose PID is 1 in its own eyes.
const helperEnv = "EMBER_PROC_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "sleep" {
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// container starts the helper chrooted in a new directory and PID
// namespace, and returns its host PID and root directory.
func container(t *testing.T) (int, string) {
	t.Helper()
	testutil.RequireRoot(t)
	root := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "helper"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/helper")
	cmd.Env = []string{helperEnv + "=sleep"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		testutil.SkipOrFail(t, "start a chrooted helper in a new PID namespace: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid, root
}

// Files of a process open inside its root: an absolute or a climbing symlink
// in it stays in it (the host file it names is not reached), FIFOs and
// directories are refused at once (a FIFO open does not wait for a writer),
// a perf map that is a symlink is refused, sizes are bounded, and the perf
// map is the one named by the PID the process sees (NSpid), 1 here.
func TestOpenInRoot(t *testing.T) {
	pid, root := container(t)
	host := filepath.Join(t.TempDir(), "host-secret")
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(root, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("tmp/perf-1.map", "1000 10 jitted\n")
	write("tmp/real.map", "2000 10 real\n")
	if err := os.WriteFile(host, []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"tmp/abs":          host,                        // absolute: the host's path
		"tmp/climb":        "../../../../../../" + host, // relative, climbing out
		"tmp/perf-2.map":   "/tmp/real.map",             // a map that is a symlink
		"tmp/magic":        "/proc/self/root" + host,    // through a magic link
		"tmp/inside-alias": "/tmp/real.map",
	} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(root, "tmp/perf-3.map"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, "tmp/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Every open below must return; a blocking one would hang here, and
	// this guard fails the test instead (not a timing assertion: the opens
	// take microseconds, the guard a minute).
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(time.Minute):
			panic("an open in the process's root blocked")
		}
	}()
	defer close(done)

	read := func(f *os.File, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		return string(b)
	}
	p, err := NewTable().Add(pid)
	if err != nil {
		t.Fatal(err)
	}
	if p.NSPID != 1 {
		t.Errorf("NSPID of a process in its own PID namespace: %d, want 1 (host PID %d)", p.NSPID, pid)
	}
	if got := read(OpenPerfMap(pid, p.NSPID)); got != "1000 10 jitted\n" {
		t.Errorf("perf map of NSpid 1: %q", got)
	}
	if got := read(OpenInRoot(pid, "/tmp/inside-alias", OpenOptions{})); got != "2000 10 real\n" {
		t.Errorf("a symlink inside the root: %q", got)
	}
	for _, c := range []struct {
		path string
		opts OpenOptions
		want error
	}{
		{"/tmp/abs", OpenOptions{}, os.ErrNotExist},
		{"/tmp/climb", OpenOptions{}, os.ErrNotExist},
		{"/tmp/magic", OpenOptions{}, nil}, // ENOENT here (no /proc in the root), ELOOP where there is
		{"/tmp/fifo", OpenOptions{}, ErrNotRegular},
		{"/tmp", OpenOptions{}, ErrNotRegular},
		{"/tmp/perf-1.map", OpenOptions{MaxBytes: 4}, ErrTooLarge},
		{PerfMapPath(2), OpenOptions{NoFollow: true}, ErrSymlink},
		{PerfMapPath(3), OpenOptions{NoFollow: true}, ErrNotRegular},
		{"tmp/perf-1.map", OpenOptions{}, nil}, // relative: refused, no error type
	} {
		f, err := OpenInRoot(pid, c.path, c.opts)
		if err == nil {
			b, _ := io.ReadAll(f)
			f.Close()
			t.Errorf("OpenInRoot(%s) opened it (%q)", c.path, b)
			continue
		}
		if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("OpenInRoot(%s): %v, want %v", c.path, err, c.want)
		}
		if strings.Contains(err.Error(), "host-secret") && !strings.Contains(err.Error(), "/proc/") {
			t.Errorf("OpenInRoot(%s) names a host path: %v", c.path, err)
		}
	}
	for _, nspid := range []int{2, 3} {
		if _, err := OpenPerfMap(pid, nspid); err == nil {
			t.Errorf("perf map %s opened", PerfMapPath(nspid))
		}
	}
	// OpenHost refuses a FIFO too, and magic links.
	if _, err := OpenHost(filepath.Join(root, "tmp/fifo"), OpenOptions{}); !errors.Is(err, ErrNotRegular) {
		t.Errorf("OpenHost of a FIFO: %v", err)
	}
	if _, err := OpenHost(fmt.Sprintf("/proc/%d/root/tmp/perf-1.map", pid), OpenOptions{}); !errors.Is(err, unix.ELOOP) {
		t.Errorf("OpenHost through /proc/PID/root, a magic link: %v, want ELOOP", err)
	}
}

// Device numbers encode as stat(2)'s st_dev, so a mapping and a stat of its
// file compare equal whatever the major and minor; major<<8|minor made
// 0:256 (an overlayfs, say) equal to 1:0.
func TestMappingDev(t *testing.T) {
	ms, err := ParseMaps(strings.NewReader(
		"1000-2000 r-xp 00000000 00:100 12 /a\n" +
			"1000-2000 r-xp 00000000 01:00 12 /b\n" +
			"1000-2000 r-xp 00000000 103:10a 12 /c\n"))
	if err != nil || len(ms) != 3 {
		t.Fatalf("%v %v", ms, err)
	}
	if ms[0].Dev == ms[1].Dev {
		t.Errorf("0:256 and 1:0 have one device number, %#x", ms[0].Dev)
	}
	if unix.Major(ms[2].Dev) != 0x103 || unix.Minor(ms[2].Dev) != 0x10a {
		t.Errorf("103:10a decodes as %x:%x", unix.Major(ms[2].Dev), unix.Minor(ms[2].Dev))
	}
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	self, _ := ParseMaps(strings.NewReader(string(b)))
	n := 0
	for _, m := range self {
		if m.Inode == 0 || !strings.HasPrefix(m.Path, "/") || m.Deleted() {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(m.Path, &st); err != nil || st.Ino != m.Inode {
			continue
		}
		n++
		if st.Dev != m.Dev {
			t.Errorf("%s: maps device %#x, stat %#x", m.Path, m.Dev, st.Dev)
		}
	}
	if n == 0 {
		t.Error("no mapped file of this process to compare")
	}
}
