package unwind

import (
	"errors"
	"fmt"
	"slices"
)

// ErrNoSpace is returned when the rows map has no free range large enough.
var ErrNoSpace = errors.New("unwind: rows map full")

// RowSpace hands out ranges of the unwind_rows array map to tables, first
// fit, and takes them back, merging free neighbours. User space owns it;
// the kernel only sees the rows and the unwind_tables entries that point at
// them. It is not safe for concurrent use.
type RowSpace struct {
	capacity uint32
	free     []rowRange // sorted by first, never adjacent
}

type rowRange struct{ first, n uint32 }

// NewRowSpace manages an unwind_rows map of capacity rows.
func NewRowSpace(capacity uint32) *RowSpace {
	s := &RowSpace{capacity: capacity}
	if capacity > 0 {
		s.free = []rowRange{{0, capacity}}
	}
	return s
}

// Alloc reserves n consecutive rows and returns the index of the first.
func (s *RowSpace) Alloc(n uint32) (uint32, error) {
	if n == 0 {
		return 0, fmt.Errorf("unwind: allocating 0 rows")
	}
	for i, r := range s.free {
		if r.n < n {
			continue
		}
		if r.n == n {
			s.free = slices.Delete(s.free, i, i+1)
		} else {
			s.free[i] = rowRange{r.first + n, r.n - n}
		}
		return r.first, nil
	}
	return 0, fmt.Errorf("%d rows, %d free in %d ranges: %w", n, s.Free(), len(s.free), ErrNoSpace)
}

// Release returns the n rows from first to the free space.
func (s *RowSpace) Release(first, n uint32) error {
	if n == 0 || uint64(first)+uint64(n) > uint64(s.capacity) {
		return fmt.Errorf("unwind: releasing rows [%d, +%d) of %d", first, n, s.capacity)
	}
	i, _ := slices.BinarySearchFunc(s.free, first, func(r rowRange, f uint32) int {
		switch {
		case r.first < f:
			return -1
		case r.first > f:
			return 1
		}
		return 0
	})
	if (i > 0 && s.free[i-1].first+s.free[i-1].n > first) || (i < len(s.free) && first+n > s.free[i].first) {
		return fmt.Errorf("unwind: releasing rows [%d, +%d) that are already free", first, n)
	}
	s.free = slices.Insert(s.free, i, rowRange{first, n})
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

// Free is the number of free rows.
func (s *RowSpace) Free() uint32 {
	var n uint32
	for _, r := range s.free {
		n += r.n
	}
	return n
}
