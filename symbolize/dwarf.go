package symbolize

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"slices"
	"unsafe"

	"github.com/emberprof/ember/symbolize/objfile"
)

// dwarfIndex maps addresses to compilation units and parses each unit's line
// table and inline tree the first time an address falls in it.
type dwarfIndex struct {
	spilled [][]byte    // decompressed sections mapped from spill files (spill.go): the Object unmaps them
	units   []*unitInfo // every unit of .debug_info, by offset
	cus     []*compUnit // units with code
	ranges  []cuRange   // sorted by low
	origins map[uint64]dieName
	abbrevs map[uint64]*abbrevTable
	cost    int64 // bytes held, for the cache
	pending int64 // cost added by lazy parsing, not yet reported
	last    cuRange
	hasLast bool

	bo                             binary.ByteOrder
	info, line, strSec, lineStr    []byte
	strOffsets, addrSec, rangesSec []byte
	rnglistsSec, abbrevSec         []byte
}

type cuRange struct {
	low, high uint64
	cu        int
}

// dieName is what a DIE says about its name, directly or by reference.
type dieName struct {
	name, linkage string
	ref           uint64 // DW_AT_abstract_origin or DW_AT_specification
}

// dwarfSections are the sections read, by their .debug_ names.
var dwarfSections = []string{"abbrev", "info", "line", "str", "ranges", "addr", "line_str", "str_offsets", "rnglists"}

func uintptrOf(p *byte) uintptr { return uintptr(unsafe.Pointer(p)) }

func newDWARFIndex(ef *elf.File, data []byte) (*dwarfIndex, error) {
	secs := make(map[string][]byte, len(dwarfSections))
	var cost int64
	var spilled [][]byte
	into := spillInto(&spilled)
	id, _ := objfile.BuildIDs(ef)
	for _, n := range dwarfSections {
		b, err := cachedSectionInto(ef, data, id, ".debug_"+n, &spilled, into)
		if err != nil {
			unmapAll(spilled)
			return nil, err
		}
		secs[n] = b
		if len(b) > 0 && !inside(b, data) && !inside(b, last(spilled)) {
			cost += int64(len(b)) // a decompressed copy on the heap
		} else {
			cost += int64(len(b)) / 16 // mapped, paged in on demand
		}
	}
	seal(spilled)
	ix, err := newDWARFIndexSections(secs, ef.ByteOrder)
	if ix == nil {
		unmapAll(spilled)
		return nil, err
	}
	ix.cost += cost
	ix.spilled = spilled
	giveBack(spilled) // the index read every unit header: let them go
	return ix, err
}

func last(ms [][]byte) []byte {
	if len(ms) == 0 {
		return nil
	}
	return ms[len(ms)-1]
}

func unmapAll(ms [][]byte) {
	for _, m := range ms {
		unmap(m)
	}
}

// newDWARFIndexSections indexes DWARF given its sections by short name
// ("info", "abbrev", ...). (nil, nil) when there is no .debug_info.
func newDWARFIndexSections(secs map[string][]byte, bo binary.ByteOrder) (*dwarfIndex, error) {
	if len(secs["info"]) == 0 {
		return nil, nil
	}
	ix := &dwarfIndex{
		bo: bo, origins: make(map[uint64]dieName), abbrevs: make(map[uint64]*abbrevTable),
		info: secs["info"], line: secs["line"], strSec: secs["str"], lineStr: secs["line_str"],
		strOffsets: secs["str_offsets"], addrSec: secs["addr"], rangesSec: secs["ranges"], rnglistsSec: secs["rnglists"],
	}
	ix.abbrevSec = secs["abbrev"]
	if err := ix.indexUnits(secs["abbrev"]); err != nil {
		return nil, err
	}
	ix.cost += int64(len(ix.ranges))*24 + int64(len(ix.units))*112
	return ix, nil
}

// inside reports whether b is a sub-slice of data (a mapped, uncompressed section).
func inside(b, data []byte) bool {
	if len(b) == 0 || len(data) == 0 {
		return false
	}
	p := uintptrOf(&b[0])
	return p >= uintptrOf(&data[0]) && p <= uintptrOf(&data[len(data)-1])
}

// indexUnits reads the unit headers of .debug_info and the first DIE of each
// unit (its ranges and the bases its forms refer to), so opening a file does
// not walk every DIE in it.
func (ix *dwarfIndex) indexUnits(abbrevSec []byte) error {
	info, bo := ix.info, ix.bo
	for off := uint64(0); off+11 <= uint64(len(info)); {
		hdr, offsz := uint64(4), uint8(4)
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
		if next < off || next > uint64(len(info)) {
			return nil // a truncated last unit: keep the ones before it
		}
		d := &dbuf{b: info[off+hdr : next], bo: bo}
		u := &unitInfo{off: off, end: next, offsz: offsz, version: d.u16()}
		kind := uint8(1) // DW_UT_compile
		if u.version >= 5 {
			kind = d.u8()
			u.addrSize = d.u8()
			u.abbrevOff = d.offset(offsz)
			switch kind {
			case 4, 5: // skeleton, split_compile
				d.skip(8)
			case 2, 6: // type, split_type
				d.skip(8 + int(offsz))
			}
		} else {
			u.abbrevOff = d.offset(offsz)
			u.addrSize = d.u8()
		}
		u.first = next - uint64(len(d.b))
		cur := off
		off = next
		if !d.ok() || u.version < 2 || u.version > 5 || (u.addrSize != 4 && u.addrSize != 8) {
			continue
		}
		ix.units = append(ix.units, u)
		if kind != 1 && kind != 3 { // only full and partial units hold code
			continue
		}
		// Only the unit's own DIE is read now, with just its abbreviation;
		// the unit's table is parsed when an address first falls in it.
		ab, err := findAbbrev(abbrevSec, u.abbrevOff, info[u.first:u.end])
		if err != nil {
			return fmt.Errorf("unit at %#x: %w", cur, err)
		}
		u.abbrevs = ab
		a, _, err := ix.readDIE(u, u.first)
		u.abbrevs = nil
		if err != nil {
			return fmt.Errorf("unit at %#x: %w", cur, err)
		}
		if a.tag != tagCompileUnit && a.tag != tagPartialUnit {
			continue
		}
		u.strOffBase, u.addrBase = a.strOffBase, a.addrBase
		u.rngBase, u.hasRngBase = a.rngBase, a.hasRng
		if b, ok := ix.addr(u, a.low); ok {
			u.base = b
		}
		rs, _ := ix.dieRanges(u, &a)
		cu := &compUnit{info: u}
		for _, rg := range rs {
			ix.ranges = append(ix.ranges, cuRange{rg[0], rg[1], len(ix.cus)})
		}
		if len(rs) > 0 {
			ix.cus = append(ix.cus, cu)
		}
	}
	slices.SortFunc(ix.ranges, func(a, b cuRange) int { return cmpU64(a.low, b.low) })
	return nil
}

func (d *dbuf) offset(offsz uint8) uint64 {
	if offsz == 8 {
		return d.u64()
	}
	return uint64(d.u32())
}

func (ix *dwarfIndex) loadAbbrevs(u *unitInfo) error {
	if u.abbrevs != nil {
		return nil
	}
	if t, ok := ix.abbrevs[u.abbrevOff]; ok {
		u.abbrevs = t
		return nil
	}
	t, err := parseAbbrevs(ix.abbrevSec, u.abbrevOff)
	if err != nil {
		return err
	}
	ix.abbrevs[u.abbrevOff] = t
	u.abbrevs = t
	return nil
}

// unitAt returns the unit holding the DIE at off.
func (ix *dwarfIndex) unitAt(off uint64) *unitInfo {
	i, _ := slices.BinarySearchFunc(ix.units, off+1, func(u *unitInfo, off uint64) int { return cmpU64(u.off, off) })
	if i == 0 {
		return nil
	}
	u := ix.units[i-1]
	if off < u.first || off >= u.end || ix.loadAbbrevs(u) != nil {
		return nil
	}
	return u
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
		return ix.cus[r.cu]
	}
	i, _ := slices.BinarySearchFunc(ix.ranges, pc+1, func(r cuRange, pc uint64) int { return cmpU64(r.low, pc) })
	// Ranges of different units may nest (a unit with a wide range and holes);
	// look back a few entries for one that holds pc.
	for j := i - 1; j >= 0 && j >= i-8; j-- {
		if r := ix.ranges[j]; pc >= r.low && pc < r.high {
			ix.last, ix.hasLast = r, true
			return ix.cus[r.cu]
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
	return ix.unitFrames(u, pc), nil
}

// zdebugData decompresses a .zdebug_ section: "ZLIB", a big-endian 8-byte
// size, then a zlib stream.
func zdebugData(s *elf.Section, data []byte, buf func(int) []byte) ([]byte, error) {
	if s.Type == elf.SHT_NOBITS {
		return nil, fmt.Errorf("section %s has no bytes in the file: %w", s.Name, ErrFormat)
	}
	b, err := fileBytes(s, data)
	if err != nil {
		return nil, err
	}
	if len(b) < 12 || string(b[:4]) != "ZLIB" {
		return nil, fmt.Errorf("section %s: no ZLIB header: %w", s.Name, ErrFormat)
	}
	return decompress(s.Name, elf.COMPRESS_ZLIB, b[12:], binary.BigEndian.Uint64(b[4:]), buf)
}
