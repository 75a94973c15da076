package bpf

import (
	"cmp"
	"fmt"
	"slices"
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
// counted. A map whose size cannot be read is an error, not a zero.
func (o *Objects) MapMemory() ([]MapMemory, error) {
	out := make([]MapMemory, 0, len(o.coll.Maps))
	for name, m := range o.coll.Maps {
		info, err := m.Info()
		if err != nil {
			return nil, fmt.Errorf("map %s: read its info: %w", name, err)
		}
		b, ok := info.Memlock()
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
