package symbolize

import (
	"bytes"
	"encoding/binary"
	"path"
	"strings"
)

// DWARF 5 file names.
//
// debug/dwarf joins a DWARF 5 file name with its directory even when the name
// is already absolute (clang writes the primary source file that way), giving
// "/comp/dir/abs/path.c". v5FileNames re-reads the file table of a DWARF 5
// line program header to build the names as the standard and llvm-symbolizer
// do: an absolute name stands alone; otherwise it is joined to its directory,
// itself joined to the unit's DW_AT_comp_dir if relative.

const (
	lnctPath     = 1
	lnctDirIndex = 2

	formBlock2   = 0x03
	formBlock4   = 0x04
	formData2    = 0x05
	formData4    = 0x06
	formData8    = 0x07
	formString   = 0x08
	formBlock    = 0x09
	formBlock1   = 0x0a
	formData1    = 0x0b
	formUdata    = 0x0f
	formStrp     = 0x0e
	formLineStrp = 0x1f
	formData16   = 0x1e
)

// v5FileNames returns the file names of the line program at off, or nil if
// it is not DWARF 5 or uses forms this reader does not handle (then
// debug/dwarf's names are kept).
func v5FileNames(line, str, lineStr []byte, off uint64, bo binary.ByteOrder, compDir string) []string {
	if off >= uint64(len(line)) {
		return nil
	}
	b := &dbuf{b: line[off:], bo: bo}
	offsz := 4
	if b.u32() == 0xffffffff {
		b.skip(8)
		offsz = 8
	}
	if b.u16() != 5 {
		return nil
	}
	b.skip(2)               // address_size, segment_selector_size
	b.skip(offsz)           // header_length
	b.skip(5)               // min_inst_length, max_ops, default_is_stmt, line_base, line_range
	b.skip(int(b.u8()) - 1) // standard_opcode_lengths
	strAt := func(form uint64) (string, bool) {
		var sec []byte
		switch form {
		case formString:
			return b.cstr(), true
		case formLineStrp:
			sec = lineStr
		case formStrp:
			sec = str
		default:
			return "", false
		}
		var o uint64
		if offsz == 8 {
			o = b.u64()
		} else {
			o = uint64(b.u32())
		}
		if o >= uint64(len(sec)) {
			return "", false
		}
		s := sec[o:]
		if i := bytes.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return string(s), true
	}
	readTable := func() ([]v5entry, bool) {
		nfmt := int(b.u8())
		formats := make([][2]uint64, 0, nfmt)
		for i := 0; i < nfmt && b.ok(); i++ {
			formats = append(formats, [2]uint64{b.uleb(), b.uleb()})
		}
		n := b.uleb()
		if n > uint64(len(b.b)) || !b.ok() {
			return nil, false
		}
		out := make([]v5entry, 0, n)
		for i := uint64(0); i < n && b.ok(); i++ {
			e := v5entry{dir: -1}
			for _, f := range formats {
				switch {
				case f[0] == lnctPath:
					s, ok := strAt(f[1])
					if !ok {
						return nil, false
					}
					e.name = s
				case f[0] == lnctDirIndex:
					v, ok := b.constant(f[1])
					if !ok {
						return nil, false
					}
					e.dir = int64(min(v, 1<<31))
				default:
					if !b.skipForm(f[1], offsz) {
						return nil, false
					}
				}
			}
			out = append(out, e)
		}
		return out, b.ok()
	}
	dirs, ok := readTable()
	if !ok {
		return nil
	}
	files, ok := readTable()
	if !ok {
		return nil
	}
	dirNames := make([]string, len(dirs))
	for i, d := range dirs {
		dirNames[i] = d.name
		if !path.IsAbs(d.name) && compDir != "" {
			dirNames[i] = joinPath(compDir, d.name)
		}
	}
	names := make([]string, len(files))
	for i, f := range files {
		name := f.name
		if !path.IsAbs(name) && f.dir >= 0 && f.dir < int64(len(dirNames)) {
			name = joinPath(dirNames[f.dir], name)
		}
		names[i] = name
	}
	return names
}

type v5entry struct {
	name string
	dir  int64
}

// joinPath joins without cleaning ("../" stays), as llvm-symbolizer prints.
func joinPath(dir, name string) string {
	if dir == "" || strings.HasSuffix(dir, "/") {
		return dir + name
	}
	return dir + "/" + name
}

// dbuf reads DWARF encodings, remembering the first overrun.
type dbuf struct {
	b   []byte
	bo  binary.ByteOrder
	bad bool
}

func (d *dbuf) ok() bool { return !d.bad }

func (d *dbuf) need(n int) bool {
	if n < 0 || n > len(d.b) {
		d.bad, d.b = true, nil
		return false
	}
	return true
}

func (d *dbuf) skip(n int) {
	if d.need(n) {
		d.b = d.b[n:]
	}
}

func (d *dbuf) u8() uint8 {
	if !d.need(1) {
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dbuf) u16() uint16 {
	if !d.need(2) {
		return 0
	}
	v := d.bo.Uint16(d.b)
	d.b = d.b[2:]
	return v
}

func (d *dbuf) u32() uint32 {
	if !d.need(4) {
		return 0
	}
	v := d.bo.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *dbuf) u64() uint64 {
	if !d.need(8) {
		return 0
	}
	v := d.bo.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *dbuf) uleb() uint64 {
	v, n := uvarint(d.b)
	if n <= 0 {
		d.bad, d.b = true, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dbuf) cstr() string {
	i := bytes.IndexByte(d.b, 0)
	if i < 0 {
		d.bad, d.b = true, nil
		return ""
	}
	s := string(d.b[:i])
	d.b = d.b[i+1:]
	return s
}

func (d *dbuf) constant(form uint64) (uint64, bool) {
	switch form {
	case formData1:
		return uint64(d.u8()), d.ok()
	case formData2:
		return uint64(d.u16()), d.ok()
	case formData4:
		return uint64(d.u32()), d.ok()
	case formData8:
		return d.u64(), d.ok()
	case formUdata:
		return d.uleb(), d.ok()
	}
	return 0, false
}

func (d *dbuf) skipForm(form uint64, offsz int) bool {
	switch form {
	case formData1, formData2, formData4, formData8, formUdata:
		_, ok := d.constant(form)
		return ok
	case formData16:
		d.skip(16)
	case formString:
		d.cstr()
	case formStrp, formLineStrp:
		d.skip(offsz)
	case formBlock1:
		d.skip(int(d.u8()))
	case formBlock2:
		d.skip(int(d.u16()))
	case formBlock4:
		d.skip(int(d.u32()))
	case formBlock:
		n := d.uleb()
		if n > uint64(len(d.b)) {
			d.bad = true
			return false
		}
		d.skip(int(n))
	default:
		return false
	}
	return d.ok()
}
