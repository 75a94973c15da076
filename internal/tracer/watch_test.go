package tracer

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/emberprof/ember/bpf"
	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/testutil"
)

// TestMissedExitSwept drops a process's exit event, as a full ring buffer
// would, and checks that the watch finds it gone all the same: after the
// next drain its table entry is forgotten and its held files closed, and
// its unwind entry is unloaded from the kernel map and from the unwinder.
func TestMissedExitSwept(t *testing.T) {
	requireBPF(t)
	w := startChain(t, "3", "-O2", "-g", "-fomit-frame-pointer")
	pid := w.Process.Pid

	defer func(d time.Duration) { watchInterval = d }(watchInterval)
	watchInterval = 200 * time.Millisecond
	var dropped atomic.Int32
	testHookDropEvent = func(typ uint32, p int) bool {
		if typ == bpf.EventExit && p == pid {
			dropped.Add(1)
			return true
		}
		return false
	}
	defer func() { testHookDropEvent = nil }()

	procs := proc.NewTable()
	defer procs.Close()
	tr, err := Start(Config{Frequency: 199, PIDs: []int{pid}, OnCPU: true, Unwind: UnwindTables}, procs)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.UnwindMode() != UnwindTables {
		testutil.SkipOrFail(t, "the kernel refused the table walker")
	}
	entryOf(t, tr, pid, 15*time.Second)
	if procs.Held() == 0 {
		t.Fatal("the process holds no files")
	}
	w.Wait()

	var gone bool
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && !gone; time.Sleep(100 * time.Millisecond) {
		if _, err := tr.Drain(); err != nil {
			t.Fatal(err)
		}
		procs.Sweep() // what the agent does after building an interval
		var entry []byte
		err := tr.objs.UnwindProcs.Lookup(uint32(pid), &entry)
		st, _ := tr.UnwindStats()
		gone = procs.Get(pid) == nil && procs.Held() == 0 && errors.Is(err, ebpf.ErrKeyNotExist) && st.Processes == 0
	}
	st, _ := tr.UnwindStats()
	t.Logf("exit events dropped: %d; missed exits found: %d; unwind entries swept: %d", dropped.Load(), tr.MissedExits(), st.Swept)
	if dropped.Load() == 0 {
		t.Fatal("the exit event was never seen, so never dropped: the test proves nothing")
	}
	if !gone {
		t.Fatalf("after the missed exit: table entry %v, %d files held, unwind stats %+v", procs.Get(pid) != nil, procs.Held(), st)
	}
	if tr.MissedExits() == 0 || st.Swept == 0 {
		t.Errorf("missed exits %d, swept %d: want both counted", tr.MissedExits(), st.Swept)
	}
}
