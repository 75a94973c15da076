package tracer

import (
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

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

// BenchmarkDrain reads and clears an idle set as a busy off-CPU interval
// leaves it: 4,000 counts rows over 1,000 user and 1,000 kernel stacks (and
// an empty on-CPU stack-trace map, which user space cannot fill).
func BenchmarkDrain(b *testing.B) {
	testutil.RequireRoot(b)
	const rows, nstacks = 4000, 1000
	set, err := newTestIdleSet(rows, nstacks)
	if err != nil {
		testutil.SkipOrFail(b, "idle set maps: %v", err)
	}
	defer set.close()
	var failed atomic.Uint64
	for b.Loop() {
		b.StopTimer()
		if err := set.fill(rows, nstacks); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		out, _, err := set.drain(true, &failed)
		if err != nil {
			b.Fatal(err)
		}
		if len(out) != rows {
			b.Fatalf("drained %d rows, want %d", len(out), rows)
		}
	}
	if n := failed.Load(); n != 0 {
		b.Errorf("%d stack lookups failed", n)
	}
}

// newTestIdleSet makes maps of the idle set's types, sized for rows and
// nstacks.
func newTestIdleSet(rows, nstacks int) (idleSet, error) {
	var set idleSet
	var err error
	mk := func(spec *ebpf.MapSpec) *ebpf.Map {
		if err != nil {
			return nil
		}
		var m *ebpf.Map
		m, err = ebpf.NewMap(spec)
		return m
	}
	set.counts = mk(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: uint32(unsafe.Sizeof(bpf.SampleKey{})),
		ValueSize: uint32(unsafe.Sizeof(bpf.SampleValue{})), MaxEntries: uint32(rows)})
	set.stacks = mk(&ebpf.MapSpec{Type: ebpf.StackTrace, KeySize: 4, ValueSize: 127 * 8, MaxEntries: 1024})
	set.kstacks = mk(&ebpf.MapSpec{Type: ebpf.Hash, Flags: unix.BPF_F_NO_PREALLOC, KeySize: 8,
		ValueSize: uint32(unsafe.Sizeof(bpf.KStack{})), MaxEntries: uint32(nstacks)})
	set.ustacks = mk(&ebpf.MapSpec{Type: ebpf.Hash, Flags: unix.BPF_F_NO_PREALLOC, KeySize: 8,
		ValueSize: uint32(unsafe.Sizeof(bpf.UStack{})), MaxEntries: uint32(nstacks)})
	if err != nil {
		set.close()
	}
	return set, err
}

func (s idleSet) close() {
	for _, m := range []*ebpf.Map{s.counts, s.stacks, s.kstacks, s.ustacks} {
		if m != nil {
			m.Close()
		}
	}
}

// fill stores nstacks distinct stacks in each off-CPU stack map and rows
// off-CPU counts rows that use them.
func (s idleSet) fill(rows, nstacks int) error {
	for i := 1; i <= nstacks; i++ {
		var ks bpf.KStack
		var us bpf.UStack
		for f := 0; f < 20; f++ {
			ks.Ips[f] = 0xffffffff81000000 + uint64(i*64+f)
			us.Ips[f] = 0x401000 + uint64(i*64+f)
		}
		if err := s.kstacks.Put(uint64(i), &ks); err != nil {
			return err
		}
		if err := s.ustacks.Put(uint64(i), &us); err != nil {
			return err
		}
	}
	for i := 0; i < rows; i++ {
		k := bpf.SampleKey{Pid: 100, Tid: uint32(100 + i), Kind: bpf.KindOffCPUSleep,
			UserStack: int64(1 + i%nstacks), KernStack: int64(1 + (i*7)%nstacks)}
		if err := s.counts.Put(&k, &bpf.SampleValue{Count: 1, Ns: 1000}); err != nil {
			return err
		}
	}
	return nil
}
