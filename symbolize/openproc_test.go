package symbolize

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/testutil"
)

// TestOpenMappedFileStaysInRoot runs a static workload chrooted into a
// directory that holds an absolute symlink to a host file, and checks that
// proc.OpenMappedFile, the opener of every file the symbolizer reads in a
// process, opens the workload's own binary through /proc/PID/root but
// resolves the symlink inside the process's root, not on the host.
func TestOpenMappedFileStaysInRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "needs root to chroot")
	}
	gcc := requireTool(t, "gcc")
	exe := built(t, "work-static", func(dir, out string) {
		run(t, dir, gcc, "-O2", "-g", "-static", "-o", out, srcPath(t, "work.c"))
	})
	root := t.TempDir()
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "work"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	hostFile := filepath.Join(t.TempDir(), "host-secret")
	os.WriteFile(hostFile, []byte("host"), 0o644)
	if err := os.Symlink(hostFile, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/work", "100", "wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	buf := make([]byte, 256)
	out.Read(buf) // wait until it runs

	// By path inside the root (start/limit that match no mapping, so the
	// map_files route fails and openat2 is used).
	inode := func(name string) uint64 {
		var st unix.Stat_t
		if err := unix.Stat(name, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	f, err := proc.OpenMappedFile(cmd.Process.Pid, &proc.Mapping{Path: "/work", Start: 1, Limit: 2, Inode: inode(filepath.Join(root, "work"))})
	if err != nil {
		t.Fatalf("open /work in the process's root: %v", err)
	}
	st, _ := f.Stat()
	f.Close()
	if st.Size() != int64(len(b)) {
		t.Errorf("opened a file of %d bytes, want %d", st.Size(), len(b))
	}
	// The absolute symlink resolves inside the root, where hostFile does not
	// exist. (The mapping names hostFile's inode, so that the same-file check
	// cannot hide an escape.)
	if f, err := proc.OpenMappedFile(cmd.Process.Pid, &proc.Mapping{Path: "/escape", Start: 1, Limit: 2, Inode: inode(hostFile)}); err == nil {
		f.Close()
		t.Fatal("a symlink in the process's root opened a host file")
	} else if !errors.Is(err, unix.ENOENT) {
		t.Logf("escape refused with: %v", err)
	}
	// Magic links (/proc/self/...) are refused.
	if f, err := proc.OpenMappedFile(os.Getpid(), &proc.Mapping{Path: "/proc/self/exe", Start: 1, Limit: 2, Inode: inode("/proc/self/exe")}); err == nil {
		f.Close()
		t.Error("opened /proc/self/exe, a magic link, through openat2")
	}
}

// TestSymbolizeMemfdExecutable runs a binary from a memfd (as some
// container runtimes and packers do) and symbolizes it through map_files.
func TestSymbolizeMemfdExecutable(t *testing.T) {
	exe := workPIE(t)
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.MemfdCreate("ember-test", 0)
	if err != nil {
		testutil.SkipOrFail(t, "memfd_create: %v", err)
	}
	mf := os.NewFile(uintptr(fd), "memfd")
	defer mf.Close()
	if _, err := mf.Write(b); err != nil {
		t.Fatal(err)
	}
	cmd, addrs := startWaitingFiles(t, "/proc/self/fd/3", []*os.File{mf})
	p := processProfile(t, cmd.Process.Pid, addrs["nearest"]+4)
	if m := p.Location[0].Mapping; !strings.HasPrefix(m.File, "/memfd:ember-test") {
		t.Fatalf("mapping file %q, want a memfd", m.File)
	}
	s := New(Options{Open: processOpener(t, cmd.Process.Pid)})
	defer s.Close()
	if err := s.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	wantOuter(t, p.Location[0], "nearest", "work.c")
}
