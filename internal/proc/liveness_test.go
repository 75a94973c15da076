package proc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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
		if readStat(fmt.Sprintf("/proc/%d", pid)).state == 'Z' {
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
	if got := readStat(dir).start; got != 1234 {
		t.Fatalf("readStat start = %d, want 1234", got)
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

// SameImage tells a process's image from the one it exec's into: a reading
// of a shell is the same image while it waits, and not once it has exec'd
// sleep, under the same PID and start time.
func TestSameImageAcrossExec(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The shell waits for a line on stdin, then becomes sleep.
	cmd := exec.Command("sh", "-c", "read x; exec sleep 100")
	cmd.Stdin = r
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Read only once an exec has finished: the kernel sets the stack's start
	// twice while it execs (setup_arg_pages, then past the ELF tables), and
	// Start returns as soon as the close-on-exec pipe closes, before both.
	waitAsleep(t, cmd.Process.Pid, func(exe string) bool { return exe != filepath.Base(self) })
	tab := NewTable()
	defer tab.Close()
	p, err := tab.Add(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if p.startStack == 0 {
		t.Fatalf("no start_stack read for pid %d", p.PID)
	}
	if !tab.SameImage(p) {
		t.Fatal("SameImage false before any exec")
	}
	w.Write([]byte("go\n"))
	w.Close()
	waitAsleep(t, p.PID, func(exe string) bool { return exe == "sleep" })
	if tab.SameImage(p) {
		t.Error("SameImage true after the exec of sleep")
	}
	q, err := tab.Add(p.PID)
	if err != nil {
		t.Fatal(err)
	}
	if !tab.SameImage(q) {
		t.Error("SameImage false for a reading after the exec")
	}
}

// waitAsleep waits until pid runs an executable whose base name pleases
// want and sleeps (state S): past its exec, blocked in a read or a nap.
func waitAsleep(t *testing.T, pid int, want func(exe string) bool) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d", pid)
	for range 500 {
		exe, _ := os.Readlink(filepath.Join(dir, "exe"))
		if want(filepath.Base(exe)) && readStat(dir).state == 'S' {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d did not settle in the expected image", pid)
}

// The small /proc files are parsed from a shared buffer: the innermost PID
// of NSpid, the cgroup v2 line, and a file longer than the first buffer.
func TestSmallProcFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pad := strings.Repeat("Pad:\tx\n", 1000) // 7,000 bytes: the buffer grows
	for _, c := range []struct {
		text string
		want int
	}{
		{"Name:\tx\nNSpid:\t4242\t7\nPPid:\t1\n", 7},
		{"Name:\tx\n" + pad + "NSpid:\t4242\n", 4242},
		{"Name:\tx\nPPid:\t1\n", 99},
		{"Name:\tx\nNSpid:\n", 99},
		{"Name:\tx\nNSpid:\t12\tzz\n", 99},
	} {
		if got := readNSPID(write("status", c.text), 99); got != c.want {
			t.Errorf("readNSPID(%q) = %d, want %d", c.text, got, c.want)
		}
	}
	if got := readNSPID(filepath.Join(dir, "none"), 99); got != 99 {
		t.Errorf("readNSPID of a missing file = %d", got)
	}
	if got := readCgroup(write("cgroup", "12:cpu:/old\n0::/kubepods/pod1/c1\n")); got != "/kubepods/pod1/c1" {
		t.Errorf("readCgroup = %q", got)
	}
	write("stat", "42 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777\n")
	if st := readStat(dir); st.state != 'S' || st.start != 777 || st.startStack != 0 {
		t.Errorf("short stat: %+v", st)
	}
	write("stat", "42 (x) S 1 2 3\n")
	if st := readStat(dir); st != (procStat{}) {
		t.Errorf("truncated stat: %+v, want zeros", st)
	}
}
