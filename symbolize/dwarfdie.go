package symbolize

import (
	"bytes"
	"fmt"
)

// A small DIE scanner.
//
// debug/dwarf decodes every attribute of every DIE into Go values (strings,
// interfaces, slices), which makes reading the tree of a large unit slow. The
// symbolizer needs only a few attributes of a few kinds of DIE, so it walks
// .debug_info itself: abbreviations are parsed once per table, attributes it
// does not need are skipped by their form's size, and strings stay offsets
// until a frame asks for its function's name. Forms are those of DWARF 2 to 5
// (DWARF 5, section 7.5.6) plus the GNU extensions gcc emits.

// unitInfo is what the scanner needs from a unit's header and DIE.
type unitInfo struct {
	off, first, end uint64 // header, first DIE, end of unit
	version         uint16
	addrSize        uint8
	offsz           uint8 // 4 or 8 (64-bit DWARF)
	abbrevOff       uint64
	base            uint64 // DW_AT_low_pc of the unit: base of its ranges
	strOffBase      uint64
	addrBase        uint64
	rngBase         uint64
	hasRngBase      bool
	abbrevs         *abbrevTable
}

type abbrevTable struct {
	dense  []*abbrev // by code, when codes are small
	sparse map[uint64]*abbrev
}

type abbrev struct {
	tag      uint64
	children bool
	attrs    []abbrevAttr
	// fixed is the size of the attributes when all their forms have a fixed
	// size for the unit's address and offset sizes in sizesKey; -1 if not.
	fixed    int
	sizesKey uint16
}

type abbrevAttr struct {
	attr, form uint64
	implicit   int64
}

const (
	atSibling        = 0x01
	atName           = 0x03
	atLowpc          = 0x11
	atHighpc         = 0x12
	atAbstractOrigin = 0x31
	atSpecification  = 0x47
	atRanges         = 0x55
	atStmtList       = 0x10
	atCompDir        = 0x1b
	atCallColumn     = 0x57
	atCallFile       = 0x58
	atCallLine       = 0x59
	atLinkageName    = 0x6e
	atStrOffsetsBase = 0x72
	atAddrBase       = 0x73
	atRnglistsBase   = 0x74
	atMIPSLinkage    = 0x2007
	atGNUAddrBase    = 0x2133

	tagCompileUnit       = 0x11
	tagPartialUnit       = 0x3c
	tagArrayType         = 0x01
	tagClassType         = 0x02
	tagEnumerationType   = 0x04
	tagLexicalBlock      = 0x0b
	tagStructureType     = 0x13
	tagSubroutineType    = 0x15
	tagUnionType         = 0x17
	tagInlinedSubroutine = 0x1d
	tagSubprogram        = 0x2e
)

func (t *abbrevTable) get(code uint64) *abbrev {
	if code < uint64(len(t.dense)) {
		return t.dense[code]
	}
	return t.sparse[code]
}

// parseAbbrevs reads the abbreviation table at off.
func parseAbbrevs(b []byte, off uint64) (*abbrevTable, error) {
	if off >= uint64(len(b)) {
		return nil, fmt.Errorf("abbrev table offset %#x beyond %d bytes: %w", off, len(b), ErrFormat)
	}
	d := &dbuf{b: b[off:]}
	t := &abbrevTable{sparse: make(map[uint64]*abbrev)}
	for d.ok() {
		code := d.uleb()
		if code == 0 {
			break
		}
		a := abbrevBody(d, true)
		if code < 1<<14 {
			for uint64(len(t.dense)) <= code {
				t.dense = append(t.dense, nil)
			}
			t.dense[code] = a
		} else {
			t.sparse[code] = a
		}
	}
	if !d.ok() {
		return nil, fmt.Errorf("abbrev table at %#x truncated: %w", off, ErrFormat)
	}
	return t, nil
}

// abbrevBody reads one abbreviation declaration after its code: the tag,
// the children flag and the attribute specifications up to the (0, 0) that
// ends them. The specifications are kept only with attrs: a scan for one
// abbreviation (findAbbrev) passes over the others without building them.
func abbrevBody(d *dbuf, attrs bool) *abbrev {
	a := &abbrev{tag: d.uleb(), children: d.u8() != 0}
	for d.ok() {
		attr, form := d.uleb(), d.uleb()
		if attr == 0 && form == 0 {
			break
		}
		var implicit int64
		if form == formImplicitConst {
			implicit = d.sleb()
		}
		if attrs {
			a.attrs = append(a.attrs, abbrevAttr{attr, form, implicit})
		}
	}
	return a
}

// findAbbrev returns a table holding only the abbreviation of the DIE that
// starts die, found by scanning the table at off without building it.
func findAbbrev(b []byte, off uint64, die []byte) (*abbrevTable, error) {
	dd := &dbuf{b: die}
	code := dd.uleb()
	if !dd.ok() || code == 0 {
		return nil, fmt.Errorf("no unit DIE: %w", ErrFormat)
	}
	if off >= uint64(len(b)) {
		return nil, fmt.Errorf("abbrev table offset %#x beyond %d bytes: %w", off, len(b), ErrFormat)
	}
	d := &dbuf{b: b[off:]}
	for d.ok() {
		c := d.uleb()
		if c == 0 {
			break
		}
		a := abbrevBody(d, c == code)
		if c == code && d.ok() {
			return &abbrevTable{sparse: map[uint64]*abbrev{code: a}}, nil
		}
	}
	return nil, fmt.Errorf("abbreviation %d not in table at %#x: %w", code, off, ErrFormat)
}

const (
	formAddr          = 0x01
	formFlag          = 0x0c
	formSdata         = 0x0d
	formRefAddr       = 0x10
	formRef1          = 0x11
	formRef2          = 0x12
	formRef4          = 0x13
	formRef8          = 0x14
	formRefUdata      = 0x15
	formIndirect      = 0x16
	formSecOffset     = 0x17
	formExprloc       = 0x18
	formFlagPresent   = 0x19
	formStrx          = 0x1a
	formAddrx         = 0x1b
	formRefSup4       = 0x1c
	formStrpSup       = 0x1d
	formRefSig8       = 0x20
	formImplicitConst = 0x21
	formLoclistx      = 0x22
	formRnglistx      = 0x23
	formRefSup8       = 0x24
	formStrx1         = 0x25
	formStrx4         = 0x28
	formAddrx1        = 0x29
	formAddrx4        = 0x2c
	formGNUAddrIndex  = 0x1f01
	formGNUStrIndex   = 0x1f02
	formGNURefAlt     = 0x1f20
	formGNUStrpAlt    = 0x1f21
)

// attrVal is one attribute's raw value: a number, or for inline strings
// (DW_FORM_string) the offset of the string in .debug_info.
type attrVal struct {
	form uint64
	val  uint64
}

// dieAttrs are the attributes the symbolizer reads from a DIE.
type dieAttrs struct {
	tag                         uint64
	children                    bool
	name, linkage               attrVal
	origin                      uint64 // absolute offset of DW_AT_abstract_origin or DW_AT_specification
	low, high, ranges           attrVal
	callFile, callLine, callCol uint64
	sibling                     uint64 // absolute offset, 0 if none
	strOffBase, addrBase        uint64
	rngBase                     uint64
	hasStrOff, hasAddr, hasRng  bool
	stmtList                    uint64
	hasStmtList                 bool
	compDir                     attrVal
}

// nextDIE is readDIE for a walk over a unit's DIEs: a DIE that ends where
// it starts, on which a walk would never end, is an error.
func (ix *dwarfIndex) nextDIE(u *unitInfo, off uint64) (dieAttrs, uint64, error) {
	a, next, err := ix.readDIE(u, off)
	if err == nil && next <= off {
		err = fmt.Errorf("DIE at %#x: no progress: %w", off, ErrFormat)
	}
	return a, next, err
}

// readDIE decodes the DIE at off (absolute) in unit u; it returns the offset
// after it. A null entry has tag 0.
func (ix *dwarfIndex) readDIE(u *unitInfo, off uint64) (dieAttrs, uint64, error) {
	var a dieAttrs
	if off >= u.end || u.end > uint64(len(ix.info)) {
		return a, off, fmt.Errorf("DIE at %#x outside its unit: %w", off, ErrFormat)
	}
	d := &dbuf{b: ix.info[off:u.end], bo: ix.bo}
	code := d.uleb()
	if code == 0 || !d.ok() {
		return a, off + uint64(len(ix.info[off:u.end])-len(d.b)), d.err(off)
	}
	ab := u.abbrevs.get(code)
	if ab == nil {
		return a, off, fmt.Errorf("DIE at %#x: unknown abbreviation %d: %w", off, code, ErrFormat)
	}
	a.tag, a.children = ab.tag, ab.children
	for _, at := range ab.attrs {
		form := at.form
		if form == formIndirect {
			form = d.uleb()
		}
		start := uint64(len(ix.info[off:u.end]) - len(d.b))
		v, ok := d.formValue(form, u, at.implicit)
		if !ok {
			return a, off, fmt.Errorf("DIE at %#x: form %#x: %w", off, form, ErrFormat)
		}
		switch at.attr {
		case atName:
			a.name = attrVal{form, v}
			if form == formString {
				a.name.val = off + start
			}
		case atLinkageName, atMIPSLinkage:
			a.linkage = attrVal{form, v}
			if form == formString {
				a.linkage.val = off + start
			}
		case atAbstractOrigin, atSpecification:
			if r, ok := u.ref(form, v); ok && a.origin == 0 {
				a.origin = r
			}
		case atLowpc:
			a.low = attrVal{form, v}
		case atHighpc:
			a.high = attrVal{form, v}
		case atRanges:
			a.ranges = attrVal{form, v}
		case atCallFile:
			a.callFile = v
		case atCallLine:
			a.callLine = v
		case atCallColumn:
			a.callCol = v
		case atSibling:
			if r, ok := u.ref(form, v); ok {
				a.sibling = r
			}
		case atStrOffsetsBase:
			a.strOffBase, a.hasStrOff = v, true
		case atAddrBase, atGNUAddrBase:
			a.addrBase, a.hasAddr = v, true
		case atRnglistsBase:
			a.rngBase, a.hasRng = v, true
		case atStmtList:
			a.stmtList, a.hasStmtList = v, true
		case atCompDir:
			a.compDir = attrVal{form, v}
			if form == formString {
				a.compDir.val = off + start
			}
		}
	}
	return a, off + uint64(len(ix.info[off:u.end])-len(d.b)), nil
}

// skipDIE steps over the DIE at off, reading only its abbreviation code when
// its attributes have a fixed size.
func (ix *dwarfIndex) skipDIE(u *unitInfo, off uint64) (next uint64, children, null bool, err error) {
	if off >= u.end || u.end > uint64(len(ix.info)) {
		return off, false, false, fmt.Errorf("DIE at %#x outside its unit: %w", off, ErrFormat)
	}
	d := &dbuf{b: ix.info[off:u.end], bo: ix.bo}
	code := d.uleb()
	if !d.ok() {
		return off, false, false, d.err(off)
	}
	if code == 0 {
		return off + uint64(len(ix.info[off:u.end])-len(d.b)), false, true, nil
	}
	ab := u.abbrevs.get(code)
	if ab == nil {
		return off, false, false, fmt.Errorf("DIE at %#x: unknown abbreviation %d: %w", off, code, ErrFormat)
	}
	key := uint16(u.addrSize)<<8 | uint16(u.offsz)<<4 | uint16(min(u.version, 15))
	if ab.sizesKey != key {
		ab.sizesKey, ab.fixed = key, fixedSize(ab, u)
	}
	if ab.fixed >= 0 {
		d.skip(ab.fixed)
	} else {
		for _, at := range ab.attrs {
			form := at.form
			if form == formIndirect {
				form = d.uleb()
			}
			if _, ok := d.formValue(form, u, at.implicit); !ok {
				return off, false, false, fmt.Errorf("DIE at %#x: form %#x: %w", off, form, ErrFormat)
			}
		}
	}
	if !d.ok() {
		return off, false, false, d.err(off)
	}
	return off + uint64(len(ix.info[off:u.end])-len(d.b)), ab.children, false, nil
}

// fixedSize is the size of an abbreviation's attributes if every form has a
// fixed size, else -1.
func fixedSize(ab *abbrev, u *unitInfo) int {
	n := 0
	for _, at := range ab.attrs {
		switch at.form {
		case formAddr:
			n += int(u.addrSize)
		case formData1, formRef1, formFlag, formStrx1, formAddrx1:
			n++
		case formData2, formRef2, formStrx1 + 1, formAddrx1 + 1:
			n += 2
		case formStrx1 + 2, formAddrx1 + 2:
			n += 3
		case formData4, formRef4, formRefSup4, formStrx4, formAddrx4:
			n += 4
		case formData8, formRef8, formRefSig8, formRefSup8:
			n += 8
		case formData16:
			n += 16
		case formStrp, formLineStrp, formSecOffset, formStrpSup, formGNURefAlt, formGNUStrpAlt:
			n += int(u.offsz)
		case formRefAddr:
			if u.version <= 2 {
				n += int(u.addrSize)
			} else {
				n += int(u.offsz)
			}
		case formFlagPresent, formImplicitConst:
		default:
			return -1
		}
	}
	return n
}

// ref turns a reference form's value into an absolute .debug_info offset.
func (u *unitInfo) ref(form, v uint64) (uint64, bool) {
	switch form {
	case formRef1, formRef2, formRef4, formRef8, formRefUdata:
		return u.off + v, true
	case formRefAddr:
		return v, true
	}
	return 0, false // supplementary files and type signatures: not followed
}

// formValue reads (or skips, returning 0) a value of the given form.
func (d *dbuf) formValue(form uint64, u *unitInfo, implicit int64) (uint64, bool) {
	switch form {
	case formAddr:
		if u.addrSize == 4 {
			return uint64(d.u32()), d.ok()
		}
		return d.u64(), d.ok()
	case formData1, formRef1, formFlag, formStrx1, formAddrx1:
		return uint64(d.u8()), d.ok()
	case formData2, formRef2, formStrx1 + 1, formAddrx1 + 1:
		return uint64(d.u16()), d.ok()
	case formStrx1 + 2, formAddrx1 + 2:
		lo := uint64(d.u16())
		return lo | uint64(d.u8())<<16, d.ok()
	case formData4, formRef4, formRefSup4, formStrx4, formAddrx4:
		return uint64(d.u32()), d.ok()
	case formData8, formRef8, formRefSig8, formRefSup8:
		return d.u64(), d.ok()
	case formData16:
		d.skip(16)
		return 0, d.ok()
	case formSdata:
		return uint64(d.sleb()), d.ok()
	case formUdata, formRefUdata, formStrx, formAddrx, formLoclistx, formRnglistx, formGNUAddrIndex, formGNUStrIndex:
		return d.uleb(), d.ok()
	case formString:
		d.cstr()
		return 0, d.ok()
	case formStrp, formLineStrp, formSecOffset, formStrpSup, formGNURefAlt, formGNUStrpAlt:
		if u.offsz == 8 {
			return d.u64(), d.ok()
		}
		return uint64(d.u32()), d.ok()
	case formRefAddr:
		if u.version <= 2 {
			return d.formValue(formAddr, u, 0)
		}
		if u.offsz == 8 {
			return d.u64(), d.ok()
		}
		return uint64(d.u32()), d.ok()
	case formFlagPresent:
		return 1, true
	case formImplicitConst:
		return uint64(implicit), true
	case formBlock1, formBlock2, formBlock4, formBlock, formExprloc:
		var n uint64
		switch form {
		case formBlock1:
			n = uint64(d.u8())
		case formBlock2:
			n = uint64(d.u16())
		case formBlock4:
			n = uint64(d.u32())
		default:
			n = d.uleb()
		}
		if n > uint64(len(d.b)) {
			d.bad = true
			return 0, false
		}
		d.skip(int(n))
		return 0, d.ok()
	}
	return 0, false
}

func (d *dbuf) err(off uint64) error {
	if d.bad {
		return fmt.Errorf("DIE at %#x truncated: %w", off, ErrFormat)
	}
	return nil
}

// str returns the string an attribute value refers to.
func (ix *dwarfIndex) str(u *unitInfo, v attrVal) string {
	var sec []byte
	off := v.val
	switch v.form {
	case formString:
		sec = ix.info
	case formStrp:
		sec = ix.strSec
	case formLineStrp:
		sec = ix.lineStr
	case formStrx, formStrx1, formStrx1 + 1, formStrx1 + 2, formStrx4, formGNUStrIndex:
		base := u.strOffBase
		if base == 0 && u.version >= 5 {
			base = 8 // the header size of .debug_str_offsets
		}
		p := base + v.val*uint64(u.offsz)
		if p+uint64(u.offsz) > uint64(len(ix.strOffsets)) || p < base {
			return ""
		}
		if u.offsz == 8 {
			off = ix.bo.Uint64(ix.strOffsets[p:])
		} else {
			off = uint64(ix.bo.Uint32(ix.strOffsets[p:]))
		}
		sec = ix.strSec
	default:
		return ""
	}
	if off >= uint64(len(sec)) {
		return ""
	}
	s := sec[off:]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	if len(s) > maxNameLen {
		s = s[:maxNameLen]
	}
	return string(s)
}

// addr resolves an address attribute (DW_FORM_addr or an index into
// .debug_addr).
func (ix *dwarfIndex) addr(u *unitInfo, v attrVal) (uint64, bool) {
	switch v.form {
	case formAddr:
		return v.val, true
	case formAddrx, formAddrx1, formAddrx1 + 1, formAddrx1 + 2, formAddrx4, formGNUAddrIndex:
		p := u.addrBase + v.val*uint64(u.addrSize)
		if p < u.addrBase || p+uint64(u.addrSize) > uint64(len(ix.addrSec)) {
			return 0, false
		}
		if u.addrSize == 4 {
			return uint64(ix.bo.Uint32(ix.addrSec[p:])), true
		}
		return ix.bo.Uint64(ix.addrSec[p:]), true
	}
	return 0, false
}
