package unwind

import (
	"errors"
	"fmt"
	"slices"
)

// ErrNoSpace is returned when an array map has no free range large enough.
var ErrNoSpace = errors.New("unwind: map full")

// Space hands out ranges of one of the array maps (unwind_rows,
// unwind_rules, unwind_pages) to tables, first fit, and takes them back,
// merging free neighbours. User space owns it; the kernel only sees the
// entries and the unwind_tables entries that point at them. It is not safe
// for concurrent use.
type Space struct {
	capacity uint32
	free     []span // sorted by first, never adjacent
}

type span struct{ first, n uint32 }

// NewSpace manages an array map of capacity entries.
func NewSpace(capacity uint32) *Space {
	s := &Space{capacity: capacity}
	if capacity > 0 {
		s.free = []span{{0, capacity}}
	}
	return s
}

// Alloc reserves n consecutive entries and returns the index of the first.
func (s *Space) Alloc(n uint32) (uint32, error) {
	if n == 0 {
		return 0, fmt.Errorf("unwind: allocating 0 entries")
	}
	for i, r := range s.free {
		if r.n < n {
			continue
		}
		if r.n == n {
			s.free = slices.Delete(s.free, i, i+1)
		} else {
			s.free[i] = span{r.first + n, r.n - n}
		}
		return r.first, nil
	}
	return 0, fmt.Errorf("%d entries, %d free in %d ranges: %w", n, s.Free(), len(s.free), ErrNoSpace)
}

// Release returns the n entries from first to the free space.
func (s *Space) Release(first, n uint32) error {
	if n == 0 || uint64(first)+uint64(n) > uint64(s.capacity) {
		return fmt.Errorf("unwind: releasing entries [%d, +%d) of %d", first, n, s.capacity)
	}
	i, _ := slices.BinarySearchFunc(s.free, first, func(r span, f uint32) int {
		switch {
		case r.first < f:
			return -1
		case r.first > f:
			return 1
		}
		return 0
	})
	if (i > 0 && s.free[i-1].first+s.free[i-1].n > first) || (i < len(s.free) && first+n > s.free[i].first) {
		return fmt.Errorf("unwind: releasing entries [%d, +%d) that are already free", first, n)
	}
	s.free = slices.Insert(s.free, i, span{first, n})
	if i+1 < len(s.free) && first+n == s.free[i+1].first { // merge with the next
		s.free[i].n += s.free[i+1].n
		s.free = slices.Delete(s.free, i+1, i+2)
	}
	if i > 0 && s.free[i-1].first+s.free[i-1].n == first { // and the previous
		s.free[i-1].n += s.free[i].n
		s.free = slices.Delete(s.free, i, i+1)
	}
	return nil
}

// Free is the number of free entries.
func (s *Space) Free() uint32 {
	var n uint32
	for _, r := range s.free {
		n += r.n
	}
	return n
}
