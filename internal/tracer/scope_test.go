package tracer

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/testutil"
)

// TestCgroupScopeKeepsReusedPIDsOut: the kernel's set of PIDs announced to
// user space (known_pids) keeps PIDs of processes long gone (4,913 of its
// 4,945 entries after a minute of churn in a cgroup, Linux 6.18), and the
// exec of whichever process has such a PID now is told to user space as the
// exec of a process it profiles; PIDs wrap within minutes on a busy host.
// The agent then read other programs of the host (a shell's ls and sort,
// libLLVM) and built unwind tables for them. The test makes such an entry:
// it puts the PIDs of two waiting shells, one in the profiled cgroup and one
// outside it, into known_pids, and lets both exec. The one inside is read
// (the control: exec events reach the table); the one outside must not be.
func TestCgroupScopeKeepsReusedPIDsOut(t *testing.T) {
	requireBPF(t)
	cg, err := os.MkdirTemp(testutil.Cgroup2Mount(t), "ember-scope-")
	if err != nil {
		testutil.SkipOrFail(t, "cannot create a cgroup v2: %v", err)
	}
	defer os.Remove(cg)
	procs := proc.NewTable()
	defer procs.Close()
	tr, err := Start(Config{Frequency: 19, OnCPU: true, Cgroups: []string{cg}}, procs)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	// A shell that waits for a line, then execs sleep.
	waiter := func(cgroupFD int) (*exec.Cmd, io.WriteCloser) {
		c := exec.Command("sh", "-c", "read x; exec "+sleep+" 30")
		if cgroupFD >= 0 {
			c.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgroupFD}
		}
		in, err := c.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		if err := tr.objs.KnownPIDs.Put(uint32(c.Process.Pid), uint8(1)); err != nil {
			t.Fatal(err)
		}
		return c, in
	}
	dir, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	outside, outIn := waiter(-1)
	inside, inIn := waiter(int(dir.Fd()))
	execed := func(pid int) bool {
		exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
		return exe == sleep || strings.HasSuffix(exe, "/sleep")
	}
	outIn.Close()
	waitFor(t, "the outside shell's exec", func() bool { return execed(outside.Process.Pid) })
	inIn.Close()
	// Events are read in order: once the inside exec is in the table, the
	// outside one, before it, was handled.
	waitFor(t, "the inside process read at its exec", func() bool {
		p := procs.Get(inside.Process.Pid)
		return p != nil && strings.HasSuffix(p.Exe, "/sleep")
	})
	if p := procs.Get(outside.Process.Pid); p != nil {
		t.Errorf("process %d (%s, cgroup %q), outside %s, is in the table after its exec", p.PID, p.Exe, p.Cgroup, cg)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen in 10 s", what)
		}
	}
}
