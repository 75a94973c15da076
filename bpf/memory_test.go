package bpf

import (
	"testing"

	"github.com/cilium/ebpf/rlimit"

	"github.com/emberprof/ember/internal/testutil"
)

// The PID filter costs memory for the PIDs it holds, not for pid_max: one
// PID, or a followed command's 4096 live processes, costs the same whatever
// kernel.pid_max is (an array of pid_max values cost 8 bytes each: 256 KiB
// at 32768, 32 MiB at 4194304). MapMemory reports every map, none zero.
func TestPIDFilterMemory(t *testing.T) {
	testutil.RequireRoot(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cfg   Config
		bound uint64
	}{
		{Config{OnCPU: true, FilterPIDs: true, PIDEntries: 1}, 8 << 10},
		{Config{OnCPU: true, FilterPIDs: true, FollowForks: true, PIDEntries: DefaultPIDEntries}, 512 << 10},
	} {
		o, err := Load(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		// Filled as a followed command fills it: present PIDs cost their
		// elements, on top of the buckets.
		for pid := uint32(1); pid <= min(c.cfg.PIDEntries, 1000); pid++ {
			if err := o.PIDs.Put(pid, uint8(1)); err != nil {
				t.Fatalf("put pid %d: %v", pid, err)
			}
		}
		mem, err := o.MapMemory()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]uint64{}
		for _, m := range mem {
			got[m.Name] = m.Bytes
			if m.Bytes == 0 {
				t.Errorf("map %s: 0 bytes", m.Name)
			}
		}
		for name := range o.coll.Maps {
			if _, ok := got[name]; !ok {
				t.Errorf("map %s not reported", name)
			}
		}
		t.Logf("PIDEntries %d: pids map %d bytes (an array at pid_max %d would be %d)", c.cfg.PIDEntries, got["pids"], pidMax(), uint64(pidMax())*8)
		if got["pids"] > c.bound {
			t.Errorf("PIDEntries %d: pids map holds %d bytes, want at most %d", c.cfg.PIDEntries, got["pids"], c.bound)
		}
		o.Close()
	}
}
