package symbolize

import (
	"encoding/binary"
	"fmt"
)

// checkELFExtents rejects an ELF image whose section headers, or sections
// with contents, lie beyond the end of the file, before debug/elf reads it:
// debug/elf would otherwise allocate buffers for the sizes such headers claim
// (in chunks, but for every section) only to find the data missing.
func checkELFExtents(b []byte) error {
	if len(b) < 52 || string(b[:4]) != "\x7fELF" {
		return fmt.Errorf("not an ELF file: %w", ErrFormat)
	}
	var bo binary.ByteOrder
	switch b[5] {
	case 1:
		bo = binary.LittleEndian
	case 2:
		bo = binary.BigEndian
	default:
		return fmt.Errorf("ELF data encoding %d: %w", b[5], ErrFormat)
	}
	var shoff, shentsize, shnum, phoff, phentsize, phnum uint64
	is64 := false
	switch b[4] {
	case 1:
		phoff, phentsize, phnum = uint64(bo.Uint32(b[0x1c:])), uint64(bo.Uint16(b[0x2a:])), uint64(bo.Uint16(b[0x2c:]))
		shoff, shentsize, shnum = uint64(bo.Uint32(b[0x20:])), uint64(bo.Uint16(b[0x2e:])), uint64(bo.Uint16(b[0x30:]))
	case 2:
		if len(b) < 64 {
			return fmt.Errorf("ELF header truncated: %w", ErrFormat)
		}
		is64 = true
		phoff, phentsize, phnum = bo.Uint64(b[0x20:]), uint64(bo.Uint16(b[0x36:])), uint64(bo.Uint16(b[0x38:]))
		shoff, shentsize, shnum = bo.Uint64(b[0x28:]), uint64(bo.Uint16(b[0x3a:])), uint64(bo.Uint16(b[0x3c:]))
	default:
		return fmt.Errorf("ELF class %d: %w", b[4], ErrFormat)
	}
	if phnum > 0 && (phoff > uint64(len(b)) || phnum*phentsize > uint64(len(b))-phoff) {
		return fmt.Errorf("%d program headers at %#x beyond the file: %w", phnum, phoff, ErrFormat)
	}
	if shoff == 0 {
		return nil // no section headers
	}
	minEnt := uint64(40)
	if is64 {
		minEnt = 64
	}
	if shentsize < minEnt || shoff >= uint64(len(b)) || uint64(len(b))-shoff < shentsize {
		return fmt.Errorf("section headers at %#x beyond the file: %w", shoff, ErrFormat)
	}
	// field reads a section header's type, offset and size.
	field := func(i uint64) (typ uint32, off, size uint64) {
		h := b[shoff+i*shentsize:]
		typ = bo.Uint32(h[4:])
		if is64 {
			return typ, bo.Uint64(h[0x18:]), bo.Uint64(h[0x20:])
		}
		return typ, uint64(bo.Uint32(h[0x10:])), uint64(bo.Uint32(h[0x14:]))
	}
	if shnum == 0 { // extended numbering: the count is in section 0's size
		_, _, shnum = field(0)
	}
	if shnum > (uint64(len(b))-shoff)/shentsize {
		return fmt.Errorf("%d section headers at %#x beyond the file: %w", shnum, shoff, ErrFormat)
	}
	for i := uint64(1); i < shnum; i++ {
		typ, off, size := field(i)
		if typ == 0 || typ == 8 { // SHT_NULL, SHT_NOBITS
			continue
		}
		if off > uint64(len(b)) || size > uint64(len(b))-off {
			return fmt.Errorf("section %d [%#x, +%#x) beyond the end of the file (%d bytes): %w", i, off, size, len(b), ErrFormat)
		}
	}
	return nil
}
