package tracer

import (
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/internal/proc"
)

// TestCPUBackOnlineSampled takes CPU 1 offline and back online while the
// tracer samples a workload pinned to it, and checks that the workload is
// sampled again afterwards: the watch closes the event of the CPU gone
// down and opens one when it comes up (the old event would count nothing
// ever after). It takes CPU 1 down for about half a second.
func TestCPUBackOnlineSampled(t *testing.T) {
	requireBPF(t)
	const ctl = "/sys/devices/system/cpu/cpu1/online"
	if b, err := os.ReadFile(ctl); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Skipf("CPU 1 cannot be taken offline here (%s: %q, %v)", ctl, b, err)
	}
	setOnline := func(on bool) error {
		v := "0"
		if on {
			v = "1"
		}
		return os.WriteFile(ctl, []byte(v), 0o644)
	}
	defer setOnline(true)

	w := startChain(t, "30", "-O2", "-g")
	pin := func() {
		var set unix.CPUSet
		set.Set(1)
		if err := unix.SchedSetaffinity(w.Process.Pid, &set); err != nil {
			t.Fatalf("pin the workload to CPU 1: %v", err)
		}
	}
	pin()

	defer func(d time.Duration) { watchInterval = d }(watchInterval)
	watchInterval = 100 * time.Millisecond
	procs := proc.NewTable()
	defer procs.Close()
	tr, err := Start(Config{Frequency: 199, PIDs: []int{w.Process.Pid}, OnCPU: true, Unwind: UnwindFP}, procs)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()

	samples := func(d time.Duration) uint64 {
		t.Helper()
		if _, err := tr.Drain(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(d)
		ss, err := tr.Drain()
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, s := range ss {
			if s.PID == uint32(w.Process.Pid) {
				n += s.Count
			}
		}
		return n
	}
	before := samples(time.Second)
	if before == 0 {
		t.Fatal("the workload on CPU 1 was not sampled before the hotplug")
	}
	if err := setOnline(false); err != nil {
		t.Skipf("take CPU 1 offline: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if err := setOnline(true); err != nil {
		t.Fatalf("bring CPU 1 back online: %v", err)
	}
	pin() // the kernel moved it off the CPU that went down
	time.Sleep(3 * watchInterval)
	after := samples(time.Second)
	t.Logf("samples of the workload pinned to CPU 1 in 1 s: %d before, %d after it went offline and back; CPU events opened since start: %d", before, after, tr.CPUsOpened())
	if tr.CPUsOpened() == 0 {
		t.Error("no CPU event was opened after the CPU came back")
	}
	if after == 0 {
		t.Errorf("the workload on CPU 1 got no samples in a second after the hotplug (%d before)", before)
	}
}
