package symbolize

import (
	"bytes"
	"encoding/binary"
	"strings"

	"github.com/emberprof/ember/symbolize/leb128"
)

// Reading DWARF encodings: a bounds-checked buffer and the form codes.

const (
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
	v, n := leb128.Uint(d.b)
	if !d.leb(n) {
		return 0
	}
	return v
}

func (d *dbuf) sleb() int64 {
	v, n := leb128.Int(d.b)
	if !d.leb(n) {
		return 0
	}
	return v
}

// leb moves past a LEB128 number of n bytes, as leb128 reported it; n <= 0
// (truncated, too long) marks the buffer bad.
func (d *dbuf) leb(n int) bool {
	if n <= 0 {
		d.bad, d.b = true, nil
		return false
	}
	d.b = d.b[n:]
	return true
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
