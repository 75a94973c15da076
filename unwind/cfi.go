package unwind

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/emberprof/ember/symbolize/leb128"
)

// This file decodes the entries of .eh_frame and .debug_frame: Common
// Information Entries (CIEs) and Frame Description Entries (FDEs). The formats
// are DWARF 5 section 6.4.1 and the Linux Standard Base's "Exception Frames"
// (LSB Core 5.0, 10.6), which .eh_frame follows.

// SectionKind says which flavour of call frame information a Section holds.
type SectionKind uint8

const (
	EHFrame    SectionKind = iota // .eh_frame: CIE id 0, relative CIE pointers, encoded addresses
	DebugFrame                    // .debug_frame: CIE id all ones, absolute CIE offsets and addresses
)

func (k SectionKind) String() string {
	if k == DebugFrame {
		return ".debug_frame"
	}
	return ".eh_frame"
}

// Section is one call frame information section as loaded in memory.
type Section struct {
	Kind SectionKind
	Data []byte
	Addr uint64 // virtual address of Data[0], for DW_EH_PE_pcrel
	// DataBase is the address DW_EH_PE_datarel is relative to (the .got on
	// x86-64); zero if unknown.
	DataBase uint64
}

// DecodeError reports malformed call frame information, like debug/dwarf's.
type DecodeError struct {
	Section string
	Offset  uint64
	Err     string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("unwind: decoding %s at offset %#x: %s", e.Section, e.Offset, e.Err)
}

// Pointer encodings, DW_EH_PE_* (LSB Core 5.0, 10.5.1).
const (
	peAbsptr   = 0x00
	peULEB128  = 0x01
	peUdata2   = 0x02
	peUdata4   = 0x03
	peUdata8   = 0x04
	peSLEB128  = 0x09
	peSdata2   = 0x0a
	peSdata4   = 0x0b
	peSdata8   = 0x0c
	pePcrel    = 0x10
	peTextrel  = 0x20
	peDatarel  = 0x30
	peFuncrel  = 0x40
	peAligned  = 0x50
	peIndirect = 0x80
	peOmit     = 0xff
)

// cie is a decoded Common Information Entry.
type cie struct {
	off         uint64
	codeAlign   uint64
	dataAlign   int64
	raReg       uint64
	addrSize    int
	fdeEnc      byte
	hasAug      bool // augmentation starts with 'z': FDEs carry an augmentation length
	signalFrame bool
	// initial instructions: Section.Data[initStart:initEnd]
	initStart, initEnd int
	init               *cieInit // the rules they set, once computed
}

// cieInit is the state after a CIE's initial instructions.
type cieInit struct {
	state      frameState
	remembered []frameState
}

// fde is a decoded Frame Description Entry.
type fde struct {
	off   uint64
	cie   *cie
	begin uint64
	end   uint64
	// instructions: Section.Data[progStart:progEnd]
	progStart, progEnd int
}

// reader is a bounds-checked cursor over a section. Errors are sticky: after
// the first one every read returns zero, and err says where it happened.
type reader struct {
	sec  *Section
	data []byte
	off  int
	err  *DecodeError
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = &DecodeError{Section: r.sec.Kind.String(), Offset: uint64(r.off), Err: fmt.Sprintf(format, args...)}
	}
	r.off = len(r.data)
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.data)-r.off {
		r.fail("%d bytes past end of data", n)
		return nil
	}
	b := r.data[r.off : r.off+n]
	r.off += n
	return b
}

func (r *reader) u8() uint8 {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u16() uint16 {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

func (r *reader) u32() uint32 {
	b := r.bytes(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (r *reader) u64() uint64 {
	b := r.bytes(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

func (r *reader) uleb() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := leb128.Uint(r.data[r.off:])
	r.leb(n)
	return v
}

func (r *reader) sleb() int64 {
	if r.err != nil {
		return 0
	}
	v, n := leb128.Int(r.data[r.off:])
	r.leb(n)
	return v
}

// leb moves past a LEB128 number of n bytes, or fails as leb128 reported.
func (r *reader) leb(n int) {
	switch {
	case n > 0:
		r.off += n
	case n == 0:
		r.fail("LEB128 number past end of data")
	default:
		r.fail("LEB128 number too long")
	}
}

func (r *reader) cstring() string {
	for i := r.off; i < len(r.data); i++ {
		if r.data[i] == 0 {
			s := string(r.data[r.off:i])
			r.off = i + 1
			return s
		}
	}
	r.fail("unterminated string")
	return ""
}

// addr reads a pointer in encoding enc (DW_EH_PE_*). ptrSize is the size of
// DW_EH_PE_absptr. funcBase is the start of the FDE's function, for funcrel.
func (r *reader) addr(enc byte, ptrSize int, funcBase uint64) uint64 {
	if enc == peOmit {
		return 0
	}
	fieldAddr := r.sec.Addr + uint64(r.off)
	var v uint64
	switch enc & 0x0f {
	case peAbsptr:
		if ptrSize == 4 {
			v = uint64(r.u32())
		} else {
			v = r.u64()
		}
	case peULEB128:
		v = r.uleb()
	case peUdata2:
		v = uint64(r.u16())
	case peUdata4:
		v = uint64(r.u32())
	case peUdata8:
		v = r.u64()
	case peSLEB128:
		v = uint64(r.sleb())
	case peSdata2:
		v = uint64(int64(int16(r.u16())))
	case peSdata4:
		v = uint64(int64(int32(r.u32())))
	case peSdata8:
		v = r.u64()
	default:
		r.fail("unknown pointer encoding %#x", enc)
		return 0
	}
	switch enc & 0x70 {
	case 0:
	case pePcrel:
		v += fieldAddr
	case peDatarel:
		v += r.sec.DataBase
	case peFuncrel:
		v += funcBase
	case peTextrel, peAligned:
		r.fail("unsupported pointer encoding %#x", enc)
	default:
		r.fail("unknown pointer encoding %#x", enc)
	}
	if enc&peIndirect != 0 {
		r.fail("indirect pointer encoding %#x for an address", enc)
	}
	return v
}

// parseFrames decodes every CIE and FDE of sec and calls fn for each FDE in
// section order. It stops at the first malformed entry.
func parseFrames(sec *Section, fn func(*fde) error) error {
	if len(sec.Data) > maxSectionSize {
		return fmt.Errorf("%s: %d bytes: %w", sec.Kind, len(sec.Data), ErrTooLarge)
	}
	cies := make(map[uint64]*cie)
	r := &reader{sec: sec, data: sec.Data}
	for r.off < len(r.data) && r.err == nil {
		start := r.off
		length := uint64(r.u32())
		dwarf64 := false
		if length == 0xffffffff {
			length = r.u64()
			dwarf64 = true
		}
		if r.err != nil {
			return r.err
		}
		if length == 0 {
			if sec.Kind == EHFrame {
				break // the zero terminator of .eh_frame
			}
			continue
		}
		if length > uint64(len(r.data)-r.off) {
			r.off = start
			r.fail("entry length %#x past end of section", length)
			return r.err
		}
		body := r.off
		next := r.off + int(length)
		er := &reader{sec: sec, data: r.data[:next], off: r.off}
		idOff := uint64(er.off)
		var id uint64
		if dwarf64 {
			id = er.u64()
		} else {
			id = uint64(er.u32())
		}
		isCIE := false
		switch sec.Kind {
		case EHFrame:
			isCIE = id == 0
		case DebugFrame:
			isCIE = (!dwarf64 && id == 0xffffffff) || (dwarf64 && id == math.MaxUint64)
		}
		if isCIE {
			c := parseCIE(er, uint64(start))
			if er.err != nil {
				return er.err
			}
			cies[uint64(start)] = c
		} else {
			var cieOff uint64
			if sec.Kind == EHFrame {
				cieOff = idOff - id // relative to the CIE pointer field
			} else {
				cieOff = id
			}
			c, ok := cies[cieOff]
			if !ok {
				// CIEs normally precede their FDEs; decode any other on demand.
				if cieOff >= uint64(len(r.data)) {
					er.off = body
					er.fail("FDE refers to missing CIE at %#x", cieOff)
					return er.err
				}
				c = parseCIEAt(sec, cieOff)
				if c == nil {
					er.off = body
					er.fail("FDE refers to bad CIE at %#x", cieOff)
					return er.err
				}
				cies[cieOff] = c
			}
			f := parseFDE(er, c, uint64(start))
			if er.err != nil {
				return er.err
			}
			if err := fn(f); err != nil {
				return err
			}
		}
		r.off = next
	}
	if r.err != nil {
		return r.err
	}
	return nil
}

// parseCIEAt decodes the CIE that starts at off, or returns nil.
func parseCIEAt(sec *Section, off uint64) *cie {
	r := &reader{sec: sec, data: sec.Data, off: int(off)}
	length := uint64(r.u32())
	dwarf64 := length == 0xffffffff
	if dwarf64 {
		length = r.u64()
	}
	if r.err != nil || length > uint64(len(r.data)-r.off) {
		return nil
	}
	er := &reader{sec: sec, data: r.data[:r.off+int(length)], off: r.off}
	var id uint64
	if dwarf64 {
		id = er.u64()
	} else {
		id = uint64(er.u32())
	}
	if (sec.Kind == EHFrame && id != 0) || (sec.Kind == DebugFrame && id != 0xffffffff && id != math.MaxUint64) {
		return nil
	}
	c := parseCIE(er, off)
	if er.err != nil {
		return nil
	}
	return c
}

// parseCIE decodes a CIE from just after its id field to the end of r.data.
func parseCIE(r *reader, off uint64) *cie {
	c := &cie{off: off, addrSize: 8, fdeEnc: peAbsptr}
	version := r.u8()
	switch {
	case r.sec.Kind == EHFrame && version != 1 && version != 3:
		r.fail("CIE version %d", version)
	case r.sec.Kind == DebugFrame && version != 1 && version != 3 && version != 4:
		r.fail("CIE version %d", version)
	}
	aug := r.cstring()
	if version == 4 {
		c.addrSize = int(r.u8())
		if seg := r.u8(); seg != 0 {
			r.fail("CIE segment selector size %d", seg)
		}
		if c.addrSize != 4 && c.addrSize != 8 {
			r.fail("CIE address size %d", c.addrSize)
		}
	}
	if len(aug) >= 2 && aug[:2] == "eh" {
		r.bytes(c.addrSize) // old GCC exception table pointer
		aug = aug[2:]
	}
	c.codeAlign = r.uleb()
	c.dataAlign = r.sleb()
	if version == 1 {
		c.raReg = uint64(r.u8())
	} else {
		c.raReg = r.uleb()
	}
	if r.err != nil {
		return c
	}
	if len(aug) > 0 && aug[0] == 'z' {
		c.hasAug = true
		n := r.uleb()
		if n > uint64(len(r.data)-r.off) {
			r.fail("CIE augmentation length %d past end of entry", n)
			return c
		}
		end := r.off + int(n)
	augLoop:
		for _, ch := range aug[1:] {
			switch ch {
			case 'L':
				r.u8() // LSDA encoding: the LSDA pointer itself is skipped in FDEs
			case 'P':
				enc := r.u8()
				r.addr(enc&^peIndirect, c.addrSize, 0)
			case 'R':
				c.fdeEnc = r.u8()
			case 'S':
				c.signalFrame = true
			case 'B', 'G':
				// AArch64 BTI and MTE markers carry no data.
			default:
				break augLoop // unknown: the length lets us skip the rest
			}
		}
		if r.err != nil {
			return c
		}
		if r.off > end {
			r.fail("CIE augmentation data overruns its length")
			return c
		}
		r.off = end
	} else if aug != "" {
		r.fail("unknown CIE augmentation %q", aug)
		return c
	}
	c.initStart, c.initEnd = r.off, len(r.data)
	r.off = len(r.data)
	return c
}

// parseFDE decodes an FDE from just after its CIE pointer to the end of r.data.
func parseFDE(r *reader, c *cie, off uint64) *fde {
	f := &fde{off: off, cie: c}
	if r.sec.Kind == EHFrame {
		f.begin = r.addr(c.fdeEnc, c.addrSize, 0)
		size := r.addr(c.fdeEnc&0x0f, c.addrSize, 0)
		f.end = f.begin + size
		if f.end < f.begin {
			r.fail("FDE address range overflows")
		}
		if c.hasAug {
			n := r.uleb()
			r.bytes(int(min(n, math.MaxInt32)))
		}
	} else {
		f.begin = r.addr(peAbsptr, c.addrSize, 0)
		size := r.addr(peAbsptr, c.addrSize, 0)
		f.end = f.begin + size
		if f.end < f.begin {
			r.fail("FDE address range overflows")
		}
	}
	f.progStart, f.progEnd = r.off, len(r.data)
	r.off = len(r.data)
	return f
}
