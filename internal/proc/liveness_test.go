package proc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// A process that exited without the table being told is Gone, and is no
// longer Alive; one that runs is neither.
func TestGoneAfterMissedExit(t *testing.T) {
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	tab := NewTable()
	defer tab.Close()
	if _, err := tab.Add(pid); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Add(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if g := tab.Gone(); len(g) != 0 || !tab.Alive(pid) {
		t.Fatalf("running processes: Gone = %v, Alive(%d) = %v", g, pid, tab.Alive(pid))
	}
	cmd.Process.Kill()
	// A zombie (exited, not reaped) has exited already.
	for range 100 {
		if state, _ := readStat(fmt.Sprintf("/proc/%d", pid)); state == 'Z' {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if g := tab.Gone(); !slices.Equal(g, []int{pid}) {
		t.Fatalf("a zombie: Gone = %v, want [%d]", g, pid)
	}
	cmd.Wait()
	if g := tab.Gone(); !slices.Equal(g, []int{pid}) || tab.Alive(pid) {
		t.Fatalf("after the exit: Gone = %v, want [%d]; Alive = %v", g, pid, tab.Alive(pid))
	}
	// Once marked exited it is the caller's: Gone no longer reports it.
	tab.MarkExited(pid)
	if g := tab.Gone(); len(g) != 0 {
		t.Fatalf("after MarkExited: Gone = %v", g)
	}
}

// A PID that now names another process (another start time) is Gone.
func TestGoneAfterPIDReuse(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "42")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stat := func(start int) {
		// comm with a space and a parenthesis, as a hostile name may be.
		line := fmt.Sprintf("42 (a b) c) S 1 42 42 0 -1 4194304 100 0 0 0 1 2 0 0 20 0 1 0 %d 1000 100\n", start)
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stat(1234)
	if err := os.WriteFile(filepath.Join(dir, "maps"), []byte("7f0000001000-7f0000020000 r-xp 00001000 08:01 1234 /usr/lib/ld.so\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := startTime(dir); got != 1234 {
		t.Fatalf("startTime = %d, want 1234", got)
	}
	tab := NewTable()
	tab.root = root
	defer tab.Close()
	if _, err := tab.Add(42); err != nil {
		t.Fatal(err)
	}
	if g := tab.Gone(); len(g) != 0 {
		t.Fatalf("Gone = %v before the PID was reused", g)
	}
	stat(5678)
	if g := tab.Gone(); !slices.Equal(g, []int{42}) {
		t.Fatalf("Gone = %v after the PID was reused, want [42]", g)
	}
}
