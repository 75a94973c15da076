package proc

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func readAll(t *testing.T, f *os.File) string {
	t.Helper()
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// OpenJIT in a container (PID 1 in its own namespace): an unmapped
// /tmp/jit-1.dump is opened inside its root when there is no perf map, the
// perf map comes before it, and one that is a symlink is refused and named.
func TestOpenJITInRoot(t *testing.T) {
	pid, root := container(t)
	tab := NewTable()
	defer tab.Close()
	if _, err := tab.Add(pid); err != nil {
		t.Fatal(err)
	}
	if _, path, err := tab.OpenJIT(pid); !errors.Is(err, fs.ErrNotExist) || path != "" {
		t.Fatalf("no JIT files: %q, %v; want fs.ErrNotExist", path, err)
	}
	dump := filepath.Join(root, "tmp", "jit-1.dump")
	if err := os.WriteFile(dump, []byte("dump"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, path, err := tab.OpenJIT(pid)
	if err != nil || path != "/tmp/jit-1.dump" || readAll(t, f) != "dump" {
		t.Fatalf("jitdump: %q, %v", path, err)
	}
	if err := os.WriteFile(filepath.Join(root, "tmp", "perf-1.map"), []byte("map"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, path, err = tab.OpenJIT(pid)
	if err != nil || path != "/tmp/perf-1.map" || readAll(t, f) != "map" {
		t.Fatalf("perf map: %q, %v", path, err)
	}
	os.Remove(filepath.Join(root, "tmp", "perf-1.map"))
	os.Remove(dump)
	if err := os.Symlink("/etc/passwd", dump); err != nil {
		t.Fatal(err)
	}
	if _, path, err := tab.OpenJIT(pid); !errors.Is(err, ErrSymlink) || path != "/tmp/jit-1.dump" {
		t.Fatalf("symlinked jitdump: %q, %v; want ErrSymlink naming it", path, err)
	}
}

// OpenJIT finds the jitdump file a process maps, wherever it is (perf's
// convention is the name, jit-PID.dump), and reads it after it was deleted.
func TestOpenJITMapped(t *testing.T) {
	pid := os.Getpid()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("jit-%d.dump", pid))
	if err := os.WriteFile(path, []byte("mapped dump"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE)
	f.Close()
	if err != nil {
		t.Skipf("map %s executable: %v", path, err)
	}
	defer unix.Munmap(mem)
	tab := NewTable()
	defer tab.Close()
	if _, err := tab.Add(pid); err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	f, got, err := tab.OpenJIT(pid)
	if err != nil || got != path || readAll(t, f) != "mapped dump" {
		t.Fatalf("mapped jitdump: %q, %v; want %s", got, err, path)
	}
}
