package symbolize

import (
	"bytes"
	"compress/zlib"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"unsafe"
)

func uintptrOf(p *byte) uintptr { return uintptr(unsafe.Pointer(p)) }

// dwarfIndex maps addresses to compilation units and parses each unit's line
// table and inline tree the first time an address falls in it.
type dwarfIndex struct {
	d       *dwarf.Data
	ranges  []cuRange // sorted by low
	units   []*compUnit
	origins map[dwarf.Offset]dieName // names of DIEs outside the unit referring to them
	cost    int64                    // bytes held, for the cache
	pending int64                    // cost added by lazy parsing, not yet reported
	last    cuRange                  // the range of the previous lookup
	hasLast bool

	line, str, lineStr []byte // for DWARF 5 file names
	bo                 binary.ByteOrder
}

type cuRange struct {
	low, high uint64
	unit      int
}

// dwarfSections are the sections debug/dwarf reads, by their .debug_ names.
var dwarfSections = []string{"abbrev", "info", "line", "str", "ranges", "addr", "line_str", "str_offsets", "rnglists"}

func newDWARFIndex(ef *elf.File, data []byte) (*dwarfIndex, error) {
	secs := make(map[string][]byte, len(dwarfSections))
	var cost int64
	for _, n := range dwarfSections {
		b, err := sectionData(ef, data, ".debug_"+n)
		if err != nil {
			return nil, err
		}
		secs[n] = b
		if len(b) > 0 && !inside(b, data) {
			cost += int64(len(b)) // a decompressed copy on the heap
		} else {
			cost += int64(len(b)) / 16 // mapped, paged in on demand
		}
	}
	ix, err := newDWARFIndexSections(secs, ef.ByteOrder)
	if ix != nil {
		ix.cost += cost
	}
	return ix, err
}

// newDWARFIndexSections indexes DWARF given its sections by short name
// ("info", "abbrev", ...). (nil, nil) when there is no .debug_info.
func newDWARFIndexSections(secs map[string][]byte, bo binary.ByteOrder) (*dwarfIndex, error) {
	if len(secs["info"]) == 0 {
		return nil, nil
	}
	d, err := dwarf.New(secs["abbrev"], nil, nil, secs["info"], secs["line"], nil, secs["ranges"], secs["str"])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	for _, n := range []string{"addr", "line_str", "str_offsets", "rnglists"} {
		if b := secs[n]; len(b) > 0 {
			if err := d.AddSection(".debug_"+n, b); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrFormat, err)
			}
		}
	}
	ix := &dwarfIndex{d: d, origins: make(map[dwarf.Offset]dieName)}
	ix.line, ix.str, ix.lineStr, ix.bo = secs["line"], secs["str"], secs["line_str"], bo
	if err := ix.indexUnits(secs["info"], bo); err != nil {
		return nil, err
	}
	ix.cost += int64(len(ix.ranges))*24 + int64(len(ix.units))*64
	return ix, nil
}

// inside reports whether b is a sub-slice of data (a mapped, uncompressed section).
func inside(b, data []byte) bool {
	if len(b) == 0 || len(data) == 0 {
		return false
	}
	p := &b[0]
	start, end := &data[0], &data[len(data)-1]
	return uintptrOf(p) >= uintptrOf(start) && uintptrOf(p) <= uintptrOf(end)
}

// indexUnits reads the unit headers of .debug_info directly to find where each
// unit's first DIE is, then only that DIE, so opening a file does not walk
// every DIE in it.
func (ix *dwarfIndex) indexUnits(info []byte, bo binary.ByteOrder) error {
	r := ix.d.Reader()
	for off := uint64(0); off+11 <= uint64(len(info)); {
		hdr, offsz := uint64(4), uint64(4)
		ulen := uint64(bo.Uint32(info[off:]))
		switch {
		case ulen == 0xffffffff:
			if off+12 > uint64(len(info)) {
				return nil
			}
			ulen, hdr, offsz = bo.Uint64(info[off+4:]), 12, 8
		case ulen >= 0xfffffff0:
			return fmt.Errorf("unit at %#x: bad length %#x: %w", off, ulen, ErrFormat)
		}
		next := off + hdr + ulen
		if next < off || next > uint64(len(info)) || off+hdr+2 > uint64(len(info)) {
			return nil // debug/dwarf already rejected or truncated it
		}
		ver := bo.Uint16(info[off+hdr:])
		first := off + hdr + 2 + offsz + 1
		kind := uint8(1) // DW_UT_compile
		if ver >= 5 {
			kind = info[off+hdr+2]
			first = off + hdr + 2 + 1 + 1 + offsz
			switch kind {
			case 4, 5: // skeleton, split_compile
				first += 8
			case 2, 6: // type, split_type
				first += 8 + offsz
			}
		}
		cur := off
		off = next
		if kind != 1 && kind != 3 { // only full and partial units hold code
			continue
		}
		if first >= next {
			continue
		}
		r.Seek(dwarf.Offset(first))
		e, err := r.Next()
		if err != nil {
			return fmt.Errorf("unit at %#x: %w: %w", cur, ErrFormat, err)
		}
		if e == nil || (e.Tag != dwarf.TagCompileUnit && e.Tag != dwarf.TagPartialUnit) {
			continue
		}
		rs, err := ix.d.Ranges(e)
		if err != nil || len(rs) == 0 {
			continue
		}
		u := &compUnit{off: e.Offset}
		for _, rg := range rs {
			if rg[1] > rg[0] {
				ix.ranges = append(ix.ranges, cuRange{rg[0], rg[1], len(ix.units)})
			}
		}
		ix.units = append(ix.units, u)
	}
	slices.SortFunc(ix.ranges, func(a, b cuRange) int { return cmpU64(a.low, b.low) })
	return nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// unitFor returns the unit whose ranges hold pc.
func (ix *dwarfIndex) unitFor(pc uint64) *compUnit {
	if r := ix.last; ix.hasLast && pc >= r.low && pc < r.high {
		return ix.units[r.unit]
	}
	i, _ := slices.BinarySearchFunc(ix.ranges, pc+1, func(r cuRange, pc uint64) int {
		if r.low < pc {
			return -1
		}
		return 1
	})
	// Ranges of different units may nest (a unit with a wide range and holes);
	// look back a few entries for one that holds pc.
	for j := i - 1; j >= 0 && j >= i-8; j-- {
		if r := ix.ranges[j]; pc >= r.low && pc < r.high {
			ix.last, ix.hasLast = r, true
			return ix.units[r.unit]
		}
	}
	return nil
}

func (ix *dwarfIndex) takeCost() int64 {
	c := ix.pending
	ix.pending = 0
	return c
}

// frames returns pc's frames, innermost first; nil when no unit covers pc.
func (ix *dwarfIndex) frames(pc uint64) ([]Frame, error) {
	u := ix.unitFor(pc)
	if u == nil {
		return nil, nil
	}
	if !u.parsed {
		u.parsed = true
		u.err = ix.parseUnit(u)
		ix.pending += u.cost()
	}
	if u.err != nil && len(u.seqs) == 0 && len(u.funcs) == 0 {
		return nil, u.err
	}
	return u.frames(pc), nil
}

// zdebugData decompresses a .zdebug_ section: "ZLIB", a big-endian 8-byte
// size, then a zlib stream.
func zdebugData(s *elf.Section, data []byte) ([]byte, error) {
	end := s.Offset + s.FileSize
	if s.Type == elf.SHT_NOBITS || end < s.Offset || end > uint64(len(data)) {
		return nil, fmt.Errorf("section %s beyond end of file: %w", s.Name, ErrFormat)
	}
	b := data[s.Offset:end]
	if len(b) < 12 || string(b[:4]) != "ZLIB" {
		return nil, fmt.Errorf("section %s: no ZLIB header: %w", s.Name, ErrFormat)
	}
	size := binary.BigEndian.Uint64(b[4:])
	if size > maxSectionSize || size/maxCompressionRatio > uint64(len(b)) {
		return nil, fmt.Errorf("section %s of %d bytes, %d compressed: %w", s.Name, size, len(b), ErrTooLarge)
	}
	zr, err := zlib.NewReader(bytes.NewReader(b[12:]))
	if err != nil {
		return nil, fmt.Errorf("section %s: %w: %w", s.Name, ErrFormat, err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, int64(size)))
	if err != nil {
		return nil, fmt.Errorf("section %s: %w: %w", s.Name, ErrFormat, err)
	}
	return out, nil
}
