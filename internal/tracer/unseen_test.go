package tracer

import (
	"encoding/binary"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/emberprof/ember/bpf"
	"github.com/emberprof/ember/internal/proc"
)

// TestOffCPUBlockEndNotReported: a kernel build can leave sched_switch out
// for some switches (this VM's never reports a switch away from its guest
// agent's threads; ftrace's sched_switch event misses them too), and the
// task switched in then runs with its block never ended. Such blocks were
// dropped without a count at the task's next switch-out or exit. The test
// makes one the way the kernel does: it gives a running thread's hot record
// the start of a block, as a switch-out would, with no switch-in to end it.
// The thread is then stopped (its next switch-out ends the block), or
// killed (its exit does). Each must come out as a block of its thread with both stacks
// marked (StackUnreported) and counted in offcpu_switch_in_unseen; its
// length is the time from the start set to the thread's last switch-in,
// which the scheduler records (sched_info.last_arrival).
func TestOffCPUBlockEndNotReported(t *testing.T) {
	requireBPF(t)
	for _, method := range []OffCPUMethod{MethodSysExit, MethodRawTP} {
		t.Run(string(method), func(t *testing.T) { testBlockEndNotReported(t, method) })
	}
}

// hotRecordSize is sizeof(struct offcpu_hot); start_ns is its first field.
const hotRecordSize = 16

func testBlockEndNotReported(t *testing.T, method OffCPUMethod) {
	procs := proc.NewTable()
	defer procs.Close()
	tr, err := Start(Config{OffCPU: true, OffCPUMethod: method, OffCPUThreshold: time.Millisecond}, procs)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if !tr.objs.HotByTID {
		t.Skip("the hot records are in task storage (pid_max above 2^20), which user space cannot write")
	}
	hot := tr.objs.OffCPUHot
	record := func(tid int) [hotRecordSize]byte {
		t.Helper()
		var r [hotRecordSize]byte
		if err := hot.Lookup(uint32(tid), &r); err != nil {
			t.Fatalf("offcpu_hot[%d]: %v", tid, err)
		}
		return r
	}
	start := func(c *exec.Cmd) {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	}

	// The block clock (CLOCK_MONOTONIC, or the runqueue clock where it is
	// global) is read off a sleeper's block: its start is a time in it.
	launched := time.Now()
	sleeper := exec.Command("sleep", "30")
	start(sleeper)
	var clock uint64
	for end := time.Now().Add(10 * time.Second); clock == 0; time.Sleep(5 * time.Millisecond) {
		r := record(sleeper.Process.Pid)
		clock = binary.NativeEndian.Uint64(r[:8])
		if clock == 0 && time.Now().After(end) {
			t.Fatal("the sleeper's block did not start in 10 s")
		}
	}
	const back = 10 * time.Second
	blockStart := clock - uint64(back)
	// unreported gives tid's hot record a block that began `back` before
	// the sleeper's, as its switch-out would leave it, if tid is on a CPU
	// (no block in progress) when read; it reports whether it did.
	unreported := func(tid int) (bool, error) {
		var r [hotRecordSize]byte
		if err := hot.Lookup(uint32(tid), &r); err != nil {
			return false, err
		}
		if binary.NativeEndian.Uint64(r[:8]) != 0 {
			return false, nil
		}
		binary.NativeEndian.PutUint64(r[:8], blockStart)
		r[12] = uint8(bpf.KindOffCPUSleep) // kind
		r[13] &= 16                        // flags: HOT_NOTED kept
		r[14] = 0                          // capture
		return true, hot.Put(uint32(tid), r)
	}
	// check finds tid's block among samples; false if there is none.
	check := func(tid int, samples []Sample) bool {
		for _, s := range samples {
			// A wait for the CPU may be one the host left unreported.
			if s.TID != uint32(tid) || s.UserErr != StackUnreported || s.Kind != bpf.KindOffCPUSleep {
				continue
			}
			if s.KernErr != StackUnreported || s.Count != 1 {
				t.Errorf("tid %d: %+v, want one block with both stacks StackUnreported", tid, s)
			}
			// Its end: the thread's last switch-in, after the sleeper's
			// block began, and before now.
			d, most := time.Duration(s.NS), back+time.Since(launched)
			if d < back || d > most {
				t.Errorf("tid %d: the block is %v long, want between %v and %v", tid, d, back, most)
			}
			t.Logf("tid %d: %v, marked %q", tid, d, StackLostReason(s.UserErr))
			return true
		}
		return false
	}
	before, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}

	// A spinning thread of another process gets such a record, then is
	// stopped (it switches out) or killed (it exits). The record is
	// written between two reads of this process, and the spinner can be
	// switched out in between: its switch-in then ends the block as usual,
	// and the test tries again.
	for _, end := range []struct {
		name string
		sig  syscall.Signal
	}{{"stopped", syscall.SIGSTOP}, {"killed", syscall.SIGKILL}} {
		var ok bool
		for try := 0; try < 5 && !ok; try++ {
			spinner := exec.Command("sh", "-c", "while :; do :; done")
			start(spinner)
			time.Sleep(100 * time.Millisecond)
			pid := spinner.Process.Pid
			var set bool
			for i := 0; i < 1000 && !set; i++ {
				if set, err = unreported(pid); err != nil {
					t.Fatal(err)
				}
			}
			syscall.Kill(pid, end.sig)
			time.Sleep(20 * time.Millisecond)
			samples, err := tr.Drain()
			if err != nil {
				t.Fatal(err)
			}
			ok = check(pid, samples)
			spinner.Process.Kill()
		}
		if !ok {
			t.Errorf("in 5 tries, no %s spinner's block came out with its stacks marked unreported", end.name)
		}
	}
	after, err := tr.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if n := after["offcpu_switch_in_unseen"] - before["offcpu_switch_in_unseen"]; n < 2 {
		t.Errorf("offcpu_switch_in_unseen rose by %d, want at least 2", n)
	}
}

// TestExitedProcessesLeaveKnownPIDs: a process leaves known_pids, the set
// of processes told to user space, at its exit (exit_common). A thread
// switched out after that (preempted as it frees its memory, which is
// common) was told to user space again as a new process, whose PID then
// stayed in known_pids for good: a later process with that PID was never
// told. The test runs short processes under an off-CPU tracer and looks
// for the PIDs of exited ones in known_pids.
func TestExitedProcessesLeaveKnownPIDs(t *testing.T) {
	requireBPF(t)
	procs := proc.NewTable()
	defer procs.Close()
	tr, err := Start(Config{OffCPU: true, OffCPUThreshold: time.Millisecond}, procs)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// Each is preempted at its exit now and then: by the next one's
	// start, and by a spinner on each CPU.
	for range runtime.NumCPU() {
		spinner := exec.Command("sh", "-c", "while :; do :; done")
		if err := spinner.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { spinner.Process.Kill(); spinner.Wait() }()
	}
	const runs = 200
	exited := map[uint32]bool{}
	for range runs {
		c := exec.Command("sh", "-c", "exit 0")
		if err := c.Run(); err != nil {
			t.Fatal(err)
		}
		exited[uint32(c.Process.Pid)] = true
	}
	time.Sleep(100 * time.Millisecond)
	var (
		pid  uint32
		one  uint8
		kept []uint32
	)
	it := tr.objs.KnownPIDs.Iterate()
	for it.Next(&pid, &one) {
		if exited[pid] {
			kept = append(kept, pid)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if len(kept) > 0 {
		t.Errorf("%d of %d exited processes are still in known_pids: %v", len(kept), runs, kept)
	}
}
