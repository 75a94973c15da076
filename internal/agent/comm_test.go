package agent

import (
	"testing"

	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/tracer"
)

// TestCommKeptWhenProcFails: a process whose /proc/PID/comm could not be read
// (it was exiting) keeps the comm the kernel gave with its sample.
func TestCommKeptWhenProcFails(t *testing.T) {
	for _, c := range []struct {
		p    *proc.Process
		want string
	}{
		{&proc.Process{PID: 7, Comm: "server"}, "server"},
		{&proc.Process{PID: 7}, "worker-3"},
		{nil, "worker-3"},
	} {
		if got := processComm("worker-3", c.p); got != c.want {
			t.Errorf("processComm(worker-3, %+v) = %q, want %q", c.p, got, c.want)
		}
	}
}

// TestDrainLookupFailureMarked: a stack the drain could not find is a
// marked loss, not the silent "no stack" of -ENOENT.
func TestDrainLookupFailureMarked(t *testing.T) {
	if got, want := lostName("user", tracer.StackLookupFailed), "[user stack lost: not in the stack map at drain]"; got != want {
		t.Errorf("lostName = %q, want %q", got, want)
	}
}
