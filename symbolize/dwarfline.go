package symbolize

import (
	"bytes"
	"fmt"
	"path"
	"slices"
)

// Line number programs (DWARF 2 to 5, section 6.2), decoded into rows of
// (address, file, line, column) per sequence. File names are built as the
// standard and llvm-symbolizer do: an absolute name stands alone, otherwise it
// is joined (without cleaning) to its directory, itself joined to the unit's
// DW_AT_comp_dir when relative.

const (
	lnctPath     = 1
	lnctDirIndex = 2

	lnsCopy             = 1
	lnsAdvancePC        = 2
	lnsAdvanceLine      = 3
	lnsSetFile          = 4
	lnsSetColumn        = 5
	lnsNegateStmt       = 6
	lnsSetBasicBlock    = 7
	lnsConstAddPC       = 8
	lnsFixedAdvancePC   = 9
	lneEndSequence      = 1
	lneSetAddress       = 2
	lneDefineFile       = 3
	maxLineFiles        = 1 << 20
	maxRowsPerLineTable = 1 << 26
)

type lineHeader struct {
	version     uint16
	offsz       int
	addrSize    uint8
	minInst     uint8
	lineBase    int8
	lineRange   uint8
	opcodeBase  uint8
	stdLengths  []byte
	files       []string // indexed by the file register's value
	program     []byte
	dirs        []string
	compDir     string
	firstFileNo int // 1 before DWARF 5, 0 from 5
}

// readLineTable decodes the line program at off for unit u.
func (ix *dwarfIndex) readLineTable(cu *compUnit, off uint64, compDir string) error {
	u := cu.info
	h, err := ix.lineHeader(off, u.addrSize, compDir)
	if err != nil {
		return err
	}
	cu.files = h.files
	d := &dbuf{b: h.program, bo: ix.bo}
	var (
		all    = make([]lineRow, 0, len(h.program)/4+16) // about one row per 4 bytes
		start  int
		low    uint64      // address of the sequence's first row
		bounds [][3]uint64 // start row, end row, low address of each sequence
		ends   []uint64    // end address of each sequence
	)
	var addr, line, file, col uint64
	reset := func() { addr, line, file, col = 0, 1, 1, 0 }
	reset()
	emit := func() {
		if len(all) == start {
			low = addr
		}
		if addr < low || addr-low > 1<<32-1 || (len(all) > start && uint32(addr-low) < all[len(all)-1].off) {
			return // not increasing, or a sequence over 4 GiB: malformed, drop the row
		}
		all = append(all, lineRow{off: uint32(addr - low), file: uint32(file), line: uint32(line), column: uint32(col)})
	}
	endSeq := func() {
		if len(all) > start && addr > low {
			bounds = append(bounds, [3]uint64{uint64(start), uint64(len(all)), low})
			ends = append(ends, addr)
			start = len(all)
		} else {
			all = all[:start]
		}
		reset()
	}
	minInst := uint64(h.minInst)
	for len(d.b) > 0 && d.ok() && len(all) < maxRowsPerLineTable {
		op := d.u8()
		switch {
		case op >= h.opcodeBase:
			adj := uint64(op - h.opcodeBase)
			addr += adj / uint64(h.lineRange) * minInst
			line += uint64(int64(h.lineBase) + int64(adj%uint64(h.lineRange)))
			emit()
		case op == 0:
			n := d.uleb()
			if n == 0 || n > uint64(len(d.b)) {
				d.bad = n > uint64(len(d.b))
				continue
			}
			body := &dbuf{b: d.b[:n], bo: ix.bo}
			d.skip(int(n))
			switch body.u8() {
			case lneEndSequence:
				endSeq()
			case lneSetAddress:
				switch len(body.b) {
				case 8:
					addr = body.u64()
				case 4:
					addr = uint64(body.u32())
				}
			case lneDefineFile:
				if len(h.files) < maxLineFiles {
					name := body.cstr()
					h.files = append(h.files, h.join(name, body.uleb()))
					cu.files = h.files
				}
			}
		case op == lnsCopy:
			emit()
		case op == lnsAdvancePC:
			addr += d.uleb() * minInst
		case op == lnsAdvanceLine:
			line += uint64(d.sleb())
		case op == lnsSetFile:
			file = d.uleb()
		case op == lnsSetColumn:
			col = d.uleb()
		case op == lnsNegateStmt, op == lnsSetBasicBlock:
		case op == lnsConstAddPC:
			addr += uint64(255-h.opcodeBase) / uint64(h.lineRange) * minInst
		case op == lnsFixedAdvancePC:
			addr += uint64(d.u16())
		default: // set_prologue_end, set_epilogue_begin, set_isa, unknown: skip args
			if int(op)-1 < len(h.stdLengths) {
				for i := 0; i < int(h.stdLengths[op-1]); i++ {
					d.uleb()
				}
			}
		}
	}
	all = all[:start]
	if cap(all) > len(all)+len(all)/4 {
		all = slices.Clone(all)
	}
	cu.seqs = make([]lineSeq, 0, len(bounds))
	for i, b := range bounds {
		cu.seqs = append(cu.seqs, lineSeq{low: b[2], high: ends[i], rows: all[b[0]:b[1]:b[1]]})
	}
	slices.SortStableFunc(cu.seqs, func(a, b lineSeq) int { return cmpU64(a.low, b.low) })
	if !d.ok() {
		return fmt.Errorf("line table at %#x truncated: %w", off, ErrFormat)
	}
	return nil
}

// join builds a file's path from its name and directory index, as
// llvm-symbolizer does: the unit's directory is prepended to a relative
// include directory, but not to directory 0 (which, before DWARF 5, is the
// unit's directory itself, and from DWARF 5 names it).
func (h *lineHeader) join(name string, dir uint64) string {
	if path.IsAbs(name) {
		return name
	}
	d, fromTable := h.compDir, false
	if h.version >= 5 {
		if dir < uint64(len(h.dirs)) {
			d, fromTable = h.dirs[dir], dir != 0
		}
	} else if dir > 0 && dir <= uint64(len(h.dirs)) {
		d, fromTable = h.dirs[dir-1], true
	}
	if fromTable && !path.IsAbs(d) && h.compDir != "" {
		d = joinPath(h.compDir, d)
	}
	if d == "" {
		return name
	}
	return joinPath(d, name)
}

func (ix *dwarfIndex) lineHeader(off uint64, addrSize uint8, compDir string) (*lineHeader, error) {
	if off >= uint64(len(ix.line)) {
		return nil, fmt.Errorf("line table offset %#x beyond .debug_line: %w", off, ErrFormat)
	}
	d := &dbuf{b: ix.line[off:], bo: ix.bo}
	h := &lineHeader{offsz: 4, addrSize: addrSize, compDir: compDir, firstFileNo: 1}
	ulen := uint64(d.u32())
	if ulen == 0xffffffff {
		ulen, h.offsz = d.u64(), 8
	}
	if ulen > uint64(len(d.b)) {
		return nil, fmt.Errorf("line table at %#x: length %d beyond .debug_line: %w", off, ulen, ErrFormat)
	}
	d.b = d.b[:ulen]
	h.version = d.u16()
	if h.version < 2 || h.version > 5 {
		return nil, fmt.Errorf("line table at %#x: version %d: %w", off, h.version, ErrFormat)
	}
	if h.version >= 5 {
		h.addrSize = d.u8()
		d.skip(1) // segment_selector_size
		h.firstFileNo = 0
	}
	hlen := d.offset(uint8(h.offsz))
	if hlen > uint64(len(d.b)) {
		return nil, fmt.Errorf("line table at %#x: header length %d: %w", off, hlen, ErrFormat)
	}
	h.program = d.b[hlen:]
	d.b = d.b[:hlen]
	h.minInst = d.u8()
	if h.version >= 4 {
		d.skip(1) // maximum_operations_per_instruction
	}
	d.skip(1) // default_is_stmt
	h.lineBase = int8(d.u8())
	h.lineRange = d.u8()
	h.opcodeBase = d.u8()
	if h.lineRange == 0 || h.opcodeBase == 0 || !d.ok() {
		return nil, fmt.Errorf("line table at %#x: bad header: %w", off, ErrFormat)
	}
	h.stdLengths = d.b[:min(int(h.opcodeBase)-1, len(d.b))]
	d.skip(int(h.opcodeBase) - 1)
	if h.version >= 5 {
		if err := ix.v5Tables(d, h); err != nil {
			return nil, fmt.Errorf("line table at %#x: %w", off, err)
		}
	} else {
		for d.ok() && len(d.b) > 0 && d.b[0] != 0 && len(h.dirs) < maxLineFiles {
			h.dirs = append(h.dirs, d.cstr())
		}
		d.skip(1)
		h.files = append(h.files, "") // file numbers start at 1
		for d.ok() && len(d.b) > 0 && d.b[0] != 0 && len(h.files) < maxLineFiles {
			name := d.cstr()
			dir := d.uleb()
			d.uleb() // mtime
			d.uleb() // length
			h.files = append(h.files, h.join(name, dir))
		}
	}
	if !d.ok() {
		return nil, fmt.Errorf("line table header at %#x truncated: %w", off, ErrFormat)
	}
	return h, nil
}

type v5entry struct {
	name string
	dir  int64
}

// v5Tables reads the directory and file tables of a DWARF 5 header, whose
// entries are described by (content type, form) pairs.
func (ix *dwarfIndex) v5Tables(d *dbuf, h *lineHeader) error {
	strAt := func(form uint64) (string, bool) {
		var sec []byte
		switch form {
		case formString:
			return d.cstr(), true
		case formLineStrp:
			sec = ix.lineStr
		case formStrp:
			sec = ix.strSec
		default:
			return "", false
		}
		o := d.offset(uint8(h.offsz))
		if o >= uint64(len(sec)) {
			return "", false
		}
		s := sec[o:]
		if i := bytes.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return string(s), true
	}
	readTable := func() ([]v5entry, error) {
		nfmt := int(d.u8())
		formats := make([][2]uint64, 0, nfmt)
		for i := 0; i < nfmt && d.ok(); i++ {
			formats = append(formats, [2]uint64{d.uleb(), d.uleb()})
		}
		n := d.uleb()
		if n > uint64(len(d.b)) || n > maxLineFiles || !d.ok() {
			return nil, fmt.Errorf("%d entries: %w", n, ErrFormat)
		}
		out := make([]v5entry, 0, n)
		for i := uint64(0); i < n && d.ok(); i++ {
			e := v5entry{dir: -1}
			for _, f := range formats {
				switch f[0] {
				case lnctPath:
					s, ok := strAt(f[1])
					if !ok {
						return nil, fmt.Errorf("path form %#x: %w", f[1], ErrFormat)
					}
					e.name = s
				case lnctDirIndex:
					v, ok := d.constant(f[1])
					if !ok {
						return nil, fmt.Errorf("directory index form %#x: %w", f[1], ErrFormat)
					}
					e.dir = int64(min(v, 1<<31))
				default:
					if !d.skipForm(f[1], h.offsz) {
						return nil, fmt.Errorf("form %#x: %w", f[1], ErrFormat)
					}
				}
			}
			out = append(out, e)
		}
		return out, nil
	}
	dirs, err := readTable()
	if err != nil {
		return err
	}
	for _, e := range dirs {
		h.dirs = append(h.dirs, e.name)
	}
	files, err := readTable()
	if err != nil {
		return err
	}
	for _, f := range files {
		h.files = append(h.files, h.join(f.name, uint64(max(f.dir, 0))))
	}
	return nil
}
