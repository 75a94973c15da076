package agent

import (
	"testing"
	"time"

	"github.com/emberprof/ember/export/pprof"
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

// TestUnmappedFramesMarked: a user stack walked whole but with frames in
// none of its process's mappings (its image before an exec Ember never saw)
// ends in UnmappedFrame and is counted, instead of unnamed frames with no
// marker; a stack in the process's mappings gets neither.
func TestUnmappedFramesMarked(t *testing.T) {
	c := newCollector(pprof.ModeCPU, 99, time.Now(), proc.NewTable())
	p := &proc.Process{PID: 7, Mappings: []proc.Mapping{{Start: 0x1000, Limit: 0x2000, Perms: "r-xp", Path: "/bin/x"}}}
	refreshed := map[uint32]bool{7: true} // do not read /proc again
	last := func(user ...uint64) string {
		locs := c.locations(nil, 7, p, stack{user: user, tables: true}, refreshed)
		l := locs[len(locs)-1]
		if len(l.Line) == 0 {
			return ""
		}
		return l.Line[0].Function.Name
	}
	if got := last(0x1010, 0x1020); got == UnmappedFrame {
		t.Errorf("mapped stack marked %q", got)
	}
	if c.unmapped != 0 {
		t.Errorf("unmapped = %d after a mapped stack", c.unmapped)
	}
	if got := last(0x1010, 0x40df4e); got != UnmappedFrame {
		t.Errorf("stack with an unmapped frame ends in %q, want %q", got, UnmappedFrame)
	}
	if c.unmapped != 1 {
		t.Errorf("unmapped = %d, want 1", c.unmapped)
	}
}
