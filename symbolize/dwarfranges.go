package symbolize

import "fmt"

const maxRangesPerDIE = 1 << 16

// DWARF 5 range list entry kinds (DWARF 5, section 7.25).
const (
	rleEndOfList    = 0
	rleBaseAddressx = 1
	rleStartxEndx   = 2
	rleStartxLength = 3
	rleOffsetPair   = 4
	rleBaseAddress  = 5
	rleStartEnd     = 6
	rleStartLength  = 7
)

// dieRanges returns the address ranges of a DIE: low_pc/high_pc, or
// DW_AT_ranges from .debug_ranges (DWARF 2 to 4) or .debug_rnglists (DWARF 5).
func (ix *dwarfIndex) dieRanges(u *unitInfo, a *dieAttrs) ([][2]uint64, error) {
	if a.ranges.form != 0 {
		if u.version >= 5 {
			return ix.rnglist(u, a.ranges)
		}
		return ix.rangesV4(u, a.ranges.val)
	}
	if a.low.form == 0 || a.high.form == 0 {
		return nil, nil
	}
	low, ok := ix.addr(u, a.low)
	if !ok {
		return nil, nil
	}
	high := low + a.high.val
	switch a.high.form {
	case formAddr, formAddrx, formAddrx1, formAddrx1 + 1, formAddrx1 + 2, formAddrx4, formGNUAddrIndex:
		if high, ok = ix.addr(u, a.high); !ok {
			return nil, nil
		}
	}
	if high <= low {
		return nil, nil
	}
	return [][2]uint64{{low, high}}, nil
}

func (ix *dwarfIndex) readAddr(d *dbuf, size uint8) uint64 {
	if size == 4 {
		return uint64(d.u32())
	}
	return d.u64()
}

func (ix *dwarfIndex) rangesV4(u *unitInfo, off uint64) ([][2]uint64, error) {
	if off >= uint64(len(ix.rangesSec)) {
		return nil, fmt.Errorf("range list at %#x beyond .debug_ranges: %w", off, ErrFormat)
	}
	d := &dbuf{b: ix.rangesSec[off:], bo: ix.bo}
	maxAddr := ^uint64(0)
	if u.addrSize == 4 {
		maxAddr = 0xffffffff
	}
	base := u.base
	var out [][2]uint64
	for d.ok() && len(out) < maxRangesPerDIE {
		lo, hi := ix.readAddr(d, u.addrSize), ix.readAddr(d, u.addrSize)
		switch {
		case !d.ok():
			return out, fmt.Errorf("range list at %#x truncated: %w", off, ErrFormat)
		case lo == 0 && hi == 0:
			return out, nil
		case lo == maxAddr:
			base = hi
		case hi > lo:
			out = append(out, [2]uint64{base + lo, base + hi})
		}
	}
	return out, nil
}

func (ix *dwarfIndex) rnglist(u *unitInfo, v attrVal) ([][2]uint64, error) {
	off := v.val
	if v.form == formRnglistx {
		if !u.hasRngBase {
			return nil, fmt.Errorf("DW_FORM_rnglistx without DW_AT_rnglists_base: %w", ErrFormat)
		}
		p := u.rngBase + v.val*uint64(u.offsz)
		if p < u.rngBase || p+uint64(u.offsz) > uint64(len(ix.rnglistsSec)) {
			return nil, fmt.Errorf("range list index %d out of range: %w", v.val, ErrFormat)
		}
		if u.offsz == 8 {
			off = u.rngBase + ix.bo.Uint64(ix.rnglistsSec[p:])
		} else {
			off = u.rngBase + uint64(ix.bo.Uint32(ix.rnglistsSec[p:]))
		}
	}
	if off >= uint64(len(ix.rnglistsSec)) {
		return nil, fmt.Errorf("range list at %#x beyond .debug_rnglists: %w", off, ErrFormat)
	}
	d := &dbuf{b: ix.rnglistsSec[off:], bo: ix.bo}
	base := u.base
	var out [][2]uint64
	add := func(lo, hi uint64) {
		if hi > lo {
			out = append(out, [2]uint64{lo, hi})
		}
	}
	idx := func(i uint64) uint64 {
		a, _ := ix.addr(u, attrVal{formAddrx, i})
		return a
	}
	for d.ok() && len(out) < maxRangesPerDIE {
		switch kind := d.u8(); kind {
		case rleEndOfList:
			return out, d.err(off)
		case rleBaseAddressx:
			base = idx(d.uleb())
		case rleStartxEndx:
			lo := idx(d.uleb())
			add(lo, idx(d.uleb()))
		case rleStartxLength:
			lo := idx(d.uleb())
			add(lo, lo+d.uleb())
		case rleOffsetPair:
			lo, hi := d.uleb(), d.uleb()
			add(base+lo, base+hi)
		case rleBaseAddress:
			base = ix.readAddr(d, u.addrSize)
		case rleStartEnd:
			lo := ix.readAddr(d, u.addrSize)
			add(lo, ix.readAddr(d, u.addrSize))
		case rleStartLength:
			lo := ix.readAddr(d, u.addrSize)
			add(lo, lo+d.uleb())
		default:
			return out, fmt.Errorf("range list at %#x: unknown entry kind %d: %w", off, kind, ErrFormat)
		}
	}
	if !d.ok() {
		return out, fmt.Errorf("range list at %#x truncated: %w", off, ErrFormat)
	}
	return out, nil
}
