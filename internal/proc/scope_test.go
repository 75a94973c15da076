package proc

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestScopeRefusesOtherCgroups: with a scope, a PID whose process /proc puts
// in another cgroup is neither read (Add), nor taken from an exec record
// (which forgets what the PID named before), nor from a fork record of a
// known parent; a gone process's records are taken on its parent's word.
func TestScopeRefusesOtherCgroups(t *testing.T) {
	root := t.TempDir()
	write := func(pid int, cgroup string) {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "maps"), []byte("7f0000001000-7f0000020000 r-xp 00001000 08:01 1234 /usr/lib/ld.so\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::"+cgroup+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tab := NewTable()
	tab.root = root
	tab.scope = []string{"/ours"}
	defer tab.Close()
	write(10, "/ours/a")
	write(20, "/other")
	write(30, "/ours/b")
	write(40, "/ourselves") // a sibling with the same prefix: not under /ours

	if _, err := tab.Add(10); err != nil {
		t.Fatalf("a process in the scope: %v", err)
	}
	for _, pid := range []int{20, 40} {
		if _, err := tab.Add(pid); !errors.Is(err, ErrOutOfScope) {
			t.Errorf("Add(%d) outside the scope: %v, want ErrOutOfScope", pid, err)
		}
	}
	if tab.Fork(10, 20) || tab.Get(20) != nil {
		t.Error("a fork record brought in a child outside the scope")
	}
	if !tab.Fork(10, 30) || tab.Get(30) == nil {
		t.Error("a fork record of a child in the scope was not taken")
	}
	if !tab.Fork(10, 50) || tab.Get(50) == nil {
		t.Error("the fork record of a child already gone was not taken on its parent's word")
	}
	// PID 30 now names a process of another cgroup, which execs.
	write(30, "/other")
	if tab.Exec(30, "ls") || tab.Get(30) != nil {
		t.Error("an exec record of a reused PID outside the scope kept it in the table")
	}
	if !tab.Exec(10, "sh") || tab.Get(10) == nil {
		t.Error("an exec record in the scope was not taken")
	}
	if n := tab.Len(); n != 2 {
		t.Errorf("%d processes known, want 2 (10 and 50)", n)
	}
}

func TestCgroupPath(t *testing.T) {
	mounts := []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}
	for dir, want := range map[string]string{
		"/sys/fs/cgroup/unified/x":    "/x",
		"/sys/fs/cgroup/unified":      "/",
		"/sys/fs/cgroup/a.slice/b/":   "/a.slice/b",
		"/sys/fs/cgroup/unified/../y": "/y",
		"/elsewhere":                  "",
	} {
		got, ok := cgroupPath(mounts, dir)
		if got != want || ok != (want != "") {
			t.Errorf("cgroupPath(%q) = %q, %v; want %q", dir, got, ok, want)
		}
	}
}
