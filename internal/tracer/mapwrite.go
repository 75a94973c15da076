package tracer

// Writing a table's entries into the kernel's array maps, and reading them
// back.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// writeArray writes data, entries of size bytes, into an array map from
// index first: through memory mappings where the map allows them, else in
// batches of updates, else one by one.
func writeArray(m *ebpf.Map, first uint32, data []byte, size int) error {
	if m.Flags()&bpfFMmapable != 0 {
		return writeMapped(m, first, data, size)
	}
	n := len(data) / size
	const chunk = 1 << 16
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		keys := make([]uint32, hi-lo)
		for i := range keys {
			keys[i] = first + uint32(lo+i)
		}
		var vals any
		switch size {
		case 4:
			v := make([]uint32, hi-lo)
			for i := range v {
				v[i] = binary.LittleEndian.Uint32(data[(lo+i)*4:])
			}
			vals = v
		case 8:
			v := make([]uint64, hi-lo)
			for i := range v {
				v[i] = binary.LittleEndian.Uint64(data[(lo+i)*8:])
			}
			vals = v
		default:
			return fmt.Errorf("array entries of %d bytes", size)
		}
		if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
			if !errors.Is(err, ebpf.ErrNotSupported) {
				return err
			}
			for i, k := range keys {
				if err := m.Put(k, data[(lo+i)*size:(lo+i+1)*size]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// bpfFMmapable is BPF_F_MMAPABLE of linux/bpf.h: the map can be mmap'd.
const bpfFMmapable = 1 << 10

// mappedChunk bounds how much of a map is mapped at once.
const mappedChunk = 1 << 20

// writeMapped writes entries into an mmapable array map through mappings of
// only the pages they fall in, one chunk at a time, each unmapped once
// written. A mapping of the whole map (ebpf.Map.Memory) would stay for the
// tracer's life, and the kernel maps every page of an array map when it is
// mapped (kernel/bpf/arraymap.c: remap_vmalloc_range): the unwind rows alone
// would add 24 MiB to Ember's resident set, whatever the tables in use.
func writeMapped(m *ebpf.Map, first uint32, data []byte, size int) error {
	return eachMapped(m, first, len(data)/size, size, unix.PROT_READ|unix.PROT_WRITE, func(i int, v []byte) {
		copy(v, data[i*size:(i+1)*size])
	})
}

// readArray reads n entries of size bytes from an array map from index
// first, packed: what writeArray wrote there.
func readArray(m *ebpf.Map, first uint32, n, size int) ([]byte, error) {
	data := make([]byte, n*size)
	if m.Flags()&bpfFMmapable != 0 {
		err := eachMapped(m, first, n, size, unix.PROT_READ, func(i int, v []byte) {
			copy(data[i*size:(i+1)*size], v)
		})
		return data, err
	}
	v := make([]byte, size)
	for i := range n {
		if err := m.Lookup(first+uint32(i), &v); err != nil {
			return nil, fmt.Errorf("entry %d of %s: %w", first+uint32(i), m, err)
		}
		copy(data[i*size:], v)
	}
	return data, nil
}

// eachMapped calls fn with entries first to first+n of an mmapable array
// map, each as its size bytes in a mapping of the pages it falls in (prot),
// mapped a chunk at a time and unmapped once fn has seen the chunk.
func eachMapped(m *ebpf.Map, first uint32, n, size, prot int, fn func(i int, v []byte)) error {
	// The kernel lays array values out 8-byte aligned
	// (kernel/bpf/arraymap.c: elem_size = round_up(value_size, 8)).
	stride := int64((size + 7) &^ 7)
	page := int64(os.Getpagesize())
	per := max(1, int(mappedChunk/stride))
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		start := (int64(first) + int64(lo)) * stride
		end := (int64(first) + int64(hi)) * stride
		off := start &^ (page - 1)
		length := (end - off + page - 1) &^ (page - 1)
		mem, err := unix.Mmap(m.FD(), off, int(length), prot, unix.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("map entries %d to %d of %s: %w", int64(first)+int64(lo), int64(first)+int64(hi), m, err)
		}
		b := mem[start-off:]
		for i := lo; i < hi; i++ {
			at := int64(i-lo) * stride
			fn(i, b[at:at+int64(size)])
		}
		if err := unix.Munmap(mem); err != nil {
			return fmt.Errorf("unmap entries of %s: %w", m, err)
		}
	}
	return nil
}
