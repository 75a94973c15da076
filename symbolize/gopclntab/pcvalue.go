package gopclntab

import (
	"encoding/binary"
	"fmt"
)

// A pc-value table (runtime.pcvalue) is a sequence of pairs: a zig-zag
// varint value delta, then a varint pc delta in units of the quantum,
// starting from value -1 at the function's entry, ended by a zero value
// delta (after the first pair). Each pair says: from the current pc, for pc
// delta quanta, the value is the new value. One decoder, PCValues, serves
// both the symbolizer's lookups (PCValue) and the unwind table builder's
// walk over whole functions.

// PCValues calls fn for each run [start, end) of one value in the table at
// offset off of the pc-value tables, from the function's entry, in order,
// until fn returns false, the table ends, or its runs pass limit. A table
// that ends badly (a truncated varint, more than the step cap) is an error
// after the runs decoded so far.
func (t *Table) PCValues(off uint32, entry, limit uint64, fn func(start, end uint64, val int64) bool) error {
	if off == 0 || int(off) >= len(t.pctab) {
		return fmt.Errorf("pc-value table at %#x of %d bytes: %w", off, len(t.pctab), ErrFormat)
	}
	p := t.pctab[off:]
	val, pc := int64(-1), entry
	for step := 0; step < maxPCValueSteps; step++ {
		uv, n := binary.Uvarint(p)
		if n <= 0 {
			return fmt.Errorf("pc-value table at %#x: truncated value: %w", off, ErrFormat)
		}
		if uv == 0 && step > 0 {
			return nil // the end
		}
		p = p[n:]
		if uv&1 != 0 {
			val += -int64(uv>>1) - 1
		} else {
			val += int64(uv >> 1)
		}
		pcd, n := binary.Uvarint(p)
		if n <= 0 {
			return fmt.Errorf("pc-value table at %#x: truncated pc delta: %w", off, ErrFormat)
		}
		p = p[n:]
		next := pc + pcd*t.Quantum
		if next < pc || pcd > 1<<32 {
			return fmt.Errorf("pc-value table at %#x: pc overflows: %w", off, ErrFormat)
		}
		if !fn(pc, next, val) || next >= limit {
			return nil
		}
		pc = next
	}
	return fmt.Errorf("pc-value table at %#x: more than %d entries: %w", off, maxPCValueSteps, ErrFormat)
}

// PCValue returns the value of the table at offset off for targetpc, as
// runtime.pcvalue does, or (-1, false).
func (t *Table) PCValue(off uint32, entry, targetpc uint64) (int64, bool) {
	val, found := int64(-1), false
	_ = t.PCValues(off, entry, targetpc+1, func(start, end uint64, v int64) bool {
		if targetpc >= start && targetpc < end {
			val, found = v, true
			return false
		}
		return true
	})
	return val, found
}
