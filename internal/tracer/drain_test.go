package tracer

import (
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/emberprof/ember/bpf"
	"github.com/emberprof/ember/internal/testutil"
)

// TestDrainLookupFailureCounted: a stack id that a counts row holds but the
// stack map does not (cleared, evicted, or stored in a set since flipped
// twice) comes back as StackLookupFailed and is counted, instead of
// becoming the "no stack" of -ENOENT.
func TestDrainLookupFailureCounted(t *testing.T) {
	testutil.RequireRoot(t)
	traces, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.StackTrace, KeySize: 4, ValueSize: 127 * 8, MaxEntries: 16})
	if err != nil {
		testutil.SkipOrFail(t, "stack trace map: %v", err)
	}
	defer traces.Close()
	ustacks, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: uint32(unsafe.Sizeof(bpf.UStack{})), MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer ustacks.Close()
	var us bpf.UStack
	us.Ips[0], us.Ips[1] = 0x401000, 0x402000
	if err := ustacks.Put(uint64(7), &us); err != nil {
		t.Fatal(err)
	}
	var failed atomic.Uint64
	d := stackLookup{ustacks: ustacks, cache: map[stackCacheKey][]uint64{}, failed: &failed}
	if pcs, code := d.lookup(ustacks, 7); code != 0 || len(pcs) != 2 || pcs[1] != 0x402000 {
		t.Errorf("stored stack: %#x, code %d", pcs, code)
	}
	if _, code := d.lookup(ustacks, -2); code != -2 || failed.Load() != 0 {
		t.Errorf("the kernel's own -ENOENT: code %d, %d counted", code, failed.Load())
	}
	if _, code := d.lookup(ustacks, 8); code != StackLookupFailed {
		t.Errorf("missing off-CPU stack: code %d, want StackLookupFailed", code)
	}
	if _, code := d.lookup(traces, 3); code != StackLookupFailed {
		t.Errorf("missing stack-trace map id: code %d, want StackLookupFailed", code)
	}
	if n := failed.Load(); n != 2 {
		t.Errorf("%d lookups counted as failed, want 2", n)
	}
}
