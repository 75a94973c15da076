package gopclntab

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
)

// Image is the contents of an ELF file, read by file offset: n bytes at off,
// or nil when they are not all there.
type Image interface {
	Bytes(off, n uint64) []byte
}

// Bytes is an Image held in memory or mapped: its slices share its storage.
type Bytes []byte

// Bytes returns b[off:off+n] or nil.
func (b Bytes) Bytes(off, n uint64) []byte {
	if off+n < off || off+n > uint64(len(b)) {
		return nil
	}
	return b[off : off+n : off+n]
}

// ReaderImage is an Image read through an io.ReaderAt; each call copies.
type ReaderImage struct{ R io.ReaderAt }

// Bytes reads n bytes at off, or returns nil.
func (r ReaderImage) Bytes(off, n uint64) []byte {
	if n > 1<<30 || int64(off) < 0 {
		return nil
	}
	b := make([]byte, n)
	if _, err := r.R.ReadAt(b, int64(off)); err != nil {
		return nil
	}
	return b
}

// Module offsets of runtime.moduledata (runtime/symtab.go, Go 1.20 to 1.26),
// in pointers: pcHeader, 6 slices, findfunctab, minpc, maxpc, text, ...
const (
	moduledataTextOff   = 22
	moduledataGofuncOff = 40
)

// Symbols are the runtime symbols Find uses when the binary has them.
var Symbols = map[string]bool{
	"runtime.pclntab": true, "runtime.epclntab": true, "runtime.text": true,
	"runtime.firstmoduledata": true, "go:func.*": true,
}

// RuntimeSymbols picks Symbols out of a symbol table.
func RuntimeSymbols(syms []elf.Symbol) map[string]uint64 {
	vals := make(map[string]uint64)
	for _, s := range syms {
		if Symbols[s.Name] {
			vals[s.Name] = s.Value
		}
	}
	return vals
}

// IsGo reports whether ef looks like a Go binary.
func IsGo(ef *elf.File) bool {
	for _, name := range []string{".go.buildinfo", ".note.go.buildid", ".gopclntab"} {
		if ef.Section(name) != nil {
			return true
		}
	}
	return false
}

// Find locates and parses the pclntab of a Go binary, with its text start and
// go:func.* address; (nil, nil) if ef is not a Go binary or none is found.
// rt holds the runtime symbols (RuntimeSymbols), nil when stripped. The
// table is the .gopclntab section of internally linked binaries; externally
// linked ones (cgo) keep it inside .data.rel.ro or .rodata, found by the
// runtime.pclntab symbol or, stripped, by its header.
func Find(ef *elf.File, img Image, rt map[string]uint64) (t *Table, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("gopclntab: %w: %v", ErrFormat, r)
		}
	}()
	addr, tab, err := findPclntab(ef, img, rt)
	if err != nil || tab == nil {
		return nil, err
	}
	t, err = Parse(tab, ef.ByteOrder)
	if err != nil {
		return nil, err
	}
	t.TextStart, t.Gofunc = findModuledata(ef, img, addr, t.PtrSize, rt)
	if t.TextStart == 0 {
		t.TextStart = rt["runtime.text"]
	}
	if t.TextStart == 0 {
		if s := ef.Section(".text"); s != nil {
			t.TextStart = s.Addr
		}
	}
	if t.Gofunc == 0 {
		t.Gofunc = rt["go:func.*"]
	}
	return t, nil
}

// section returns the contents of an uncompressed section, or nil.
func section(ef *elf.File, img Image, name string) (*elf.Section, []byte) {
	s := ef.Section(name)
	if s == nil || s.Type == elf.SHT_NOBITS || s.Flags&elf.SHF_COMPRESSED != 0 {
		return nil, nil
	}
	return s, img.Bytes(s.Offset, s.FileSize)
}

func findPclntab(ef *elf.File, img Image, rt map[string]uint64) (uint64, []byte, error) {
	for _, name := range []string{".gopclntab", ".data.rel.ro.gopclntab"} {
		if s := ef.Section(name); s != nil {
			s, tab := section(ef, img, name)
			if tab == nil {
				return 0, nil, fmt.Errorf("%s unreadable: %w", name, ErrFormat)
			}
			return s.Addr, tab, nil
		}
	}
	if ef.Section(".go.buildinfo") == nil && ef.Section(".note.go.buildid") == nil {
		return 0, nil, nil // not Go
	}
	if start, end := rt["runtime.pclntab"], rt["runtime.epclntab"]; start != 0 && end > start {
		if tab := ReadVaddr(ef, img, start, end-start); tab != nil {
			return start, tab, nil
		}
	}
	// Stripped: look for the header (magic, two zero pads, quantum, pointer
	// size) at aligned offsets of the sections the linker puts it in.
	var oldErr error
	for _, name := range []string{".data.rel.ro", ".rodata", ".noptrdata"} {
		s, b := section(ef, img, name)
		if b == nil {
			continue
		}
		for _, m := range []uint32{Go120Magic, go118Magic} {
			magic := make([]byte, 6)
			ef.ByteOrder.PutUint32(magic, m)
			for off := 0; off+16 <= len(b); {
				i := bytes.Index(b[off:], magic)
				if i < 0 {
					break
				}
				off += i
				if off%8 == 0 && (b[off+6] == 1 || b[off+6] == 2 || b[off+6] == 4) && (b[off+7] == 4 || b[off+7] == 8) {
					t, err := Parse(b[off:], ef.ByteOrder)
					if err == nil && t.NFunc > 0 {
						return s.Addr + uint64(off), b[off:], nil
					}
					if err != nil && oldErr == nil && m != Go120Magic {
						oldErr = err
					}
				}
				off++
			}
		}
	}
	return 0, nil, oldErr
}

// findModuledata locates runtime.firstmoduledata, by symbol or, in stripped
// binaries, by scanning the data sections for a pointer to the pclntab
// followed by a pointer to its function name table, and returns its text and
// gofunc fields. In position-independent binaries linked externally the
// pointers are only in the dynamic relocations (R_*_RELATIVE addends), so
// those are read instead.
func findModuledata(ef *elf.File, img Image, pclntab uint64, ptrSize int, rt map[string]uint64) (text, gofunc uint64) {
	size := uint64((moduledataGofuncOff + 1) * ptrSize)
	word := func(b []byte, i int) uint64 {
		if ptrSize == 4 {
			return uint64(ef.ByteOrder.Uint32(b[i*4:]))
		}
		return ef.ByteOrder.Uint64(b[i*8:])
	}
	valid := func(p func(int) uint64) (uint64, uint64, bool) {
		if p(0) != pclntab || p(1) <= pclntab || p(1)-pclntab > 1<<32 {
			return 0, 0, false
		}
		text, gofunc := p(moduledataTextOff), p(moduledataGofuncOff)
		if text == 0 || gofunc == 0 || p(moduledataTextOff+1) <= text {
			return 0, 0, false
		}
		return text, gofunc, true
	}
	check := func(b []byte) (uint64, uint64, bool) {
		if uint64(len(b)) < size {
			return 0, 0, false
		}
		return valid(func(i int) uint64 { return word(b, i) })
	}
	if addr := rt["runtime.firstmoduledata"]; addr != 0 {
		if t, g, ok := check(ReadVaddr(ef, img, addr, size)); ok {
			return t, g
		}
	}
	if t, g, ok := moduledataFromRelocs(ef, img, pclntab, ptrSize, valid); ok {
		return t, g
	}
	var needle [8]byte
	if ptrSize == 4 {
		ef.ByteOrder.PutUint32(needle[:], uint32(pclntab))
	} else {
		ef.ByteOrder.PutUint64(needle[:], pclntab)
	}
	for _, name := range []string{".go.module", ".noptrdata", ".data", ".data.rel.ro"} {
		_, b := section(ef, img, name)
		for off := 0; off+int(size) <= len(b); {
			i := bytes.Index(b[off:], needle[:ptrSize])
			if i < 0 {
				break
			}
			off += i
			if off%ptrSize == 0 {
				if t, g, ok := check(b[off:]); ok {
					return t, g
				}
			}
			off++
		}
	}
	return 0, 0
}

// moduledataFromRelocs finds the moduledata through the RELATIVE relocations
// of .rela.dyn: the one whose addend is the pclntab's address is at the
// moduledata's first field, and the others give the fields after it.
func moduledataFromRelocs(ef *elf.File, img Image, pclntab uint64, ptrSize int,
	valid func(func(int) uint64) (uint64, uint64, bool)) (uint64, uint64, bool) {
	if ptrSize != 8 || ef.Class != elf.ELFCLASS64 {
		return 0, 0, false
	}
	_, rela := section(ef, img, ".rela.dyn")
	if len(rela) < 24 {
		return 0, 0, false
	}
	relative := func(info uint64) bool {
		typ := elf.R_TYPE64(info)
		return ef.Machine == elf.EM_X86_64 && elf.R_X86_64(typ) == elf.R_X86_64_RELATIVE ||
			ef.Machine == elf.EM_AARCH64 && elf.R_AARCH64(typ) == elf.R_AARCH64_RELATIVE
	}
	bo := ef.ByteOrder
	for i := 0; i+24 <= len(rela); i += 24 {
		if !relative(bo.Uint64(rela[i+8:])) || bo.Uint64(rela[i+16:]) != pclntab {
			continue
		}
		md := bo.Uint64(rela[i:])
		fields := make(map[uint64]uint64, moduledataGofuncOff+1)
		for j := 0; j+24 <= len(rela); j += 24 {
			off := bo.Uint64(rela[j:])
			if off >= md && off < md+uint64((moduledataGofuncOff+1)*8) && relative(bo.Uint64(rela[j+8:])) {
				fields[(off-md)/8] = bo.Uint64(rela[j+16:])
			}
		}
		if t, g, ok := valid(func(k int) uint64 { return fields[uint64(k)] }); ok {
			return t, g, true
		}
	}
	return 0, 0, false
}

// ReadVaddr returns n bytes of the file's image at virtual address addr, from
// the allocated section holding it, or nil.
func ReadVaddr(ef *elf.File, img Image, addr, n uint64) []byte {
	for _, s := range ef.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS || s.Flags&elf.SHF_COMPRESSED != 0 {
			continue
		}
		if addr < s.Addr || addr-s.Addr >= s.Size || n > s.Size-(addr-s.Addr) {
			continue
		}
		return img.Bytes(s.Offset+(addr-s.Addr), n)
	}
	return nil
}
