package bpf

import (
	"cmp"
	"fmt"
	"math/bits"
	"os"
	"slices"

	"github.com/cilium/ebpf"
)

// MapMemory is the kernel memory one of Ember's maps holds.
type MapMemory struct {
	Name  string
	Bytes uint64
}

// MapMemory returns the kernel memory of every loaded map, largest first:
// the memlock of its fdinfo, which is the kernel's own accounting of the
// map (map_mem_usage(), Linux 6.5 on) or, before, its estimate from entry
// and value sizes. Data sections (.rodata, .bss) are maps too and are
// counted. Before 6.5 some kernels (Debian's 6.1) report no memlock for a
// ring buffer: its memory is then its data area (max_entries bytes) and its
// two pages of positions, what the kernel allocates for it
// (kernel/bpf/ringbuf.c, bpf_ringbuf_alloc), and none for task storage,
// whose records are charged to each task: the map itself holds its buckets,
// 16 bytes for each of max(2, possible CPUs rounded up to a power of two)
// (bpf_local_storage_map_alloc), which is what 6.5 on reports for it. Any
// other map whose size cannot be read is an error, not a zero.
func (o *Objects) MapMemory() ([]MapMemory, error) {
	out := make([]MapMemory, 0, len(o.coll.Maps))
	for name, m := range o.coll.Maps {
		info, err := m.Info()
		if err != nil {
			return nil, fmt.Errorf("map %s: read its info: %w", name, err)
		}
		b, ok := info.Memlock()
		if !ok && info.Type == ebpf.RingBuf {
			b, ok = uint64(info.MaxEntries)+2*uint64(os.Getpagesize()), true
		}
		if !ok && info.Type == ebpf.TaskStorage {
			cpus, err := ebpf.PossibleCPU()
			if err != nil {
				return nil, fmt.Errorf("map %s: %w", name, err)
			}
			b, ok = 16*max(2, uint64(1)<<bits.Len(uint(cpus-1))), true
		}
		if !ok {
			return nil, fmt.Errorf("map %s: the kernel reports no memlock", name)
		}
		out = append(out, MapMemory{Name: name, Bytes: b})
	}
	slices.SortFunc(out, func(a, b MapMemory) int {
		return cmp.Or(cmp.Compare(b.Bytes, a.Bytes), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

// setPIDHints sets the pid_hint byte of each of pids in the object's .bss
// before it is loaded (pid_hint in ember.bpf.c): the programs then ask the
// pids hash only about tgids that share a hint with a filtered one.
func setPIDHints(spec *ebpf.CollectionSpec, pids []uint32) error {
	if len(pids) == 0 {
		return nil
	}
	v := spec.Variables["pid_hint"]
	if v == nil {
		return fmt.Errorf("no pid_hint in the BPF object")
	}
	hints := make([]byte, v.Size())
	for _, pid := range pids {
		hints[pid%uint32(len(hints))] = 1
	}
	if err := v.Set(hints); err != nil {
		return fmt.Errorf("set pid_hint: %w", err)
	}
	return nil
}
