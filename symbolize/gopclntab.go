package symbolize

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
)

// goTable reads Go's pclntab (Go 1.20 and later, magic 0xfffffff1): function
// names, file:line, and the inline tree (FUNCDATA_InlTree indexed by
// PCDATA_InlTreeIndex), as the runtime does in runtime/symtab.go and
// runtime/symtabinl.go. The table is in .gopclntab even in binaries linked
// with -s -w.
type goTable struct {
	bo        binary.ByteOrder
	ptrSize   int
	quantum   uint64
	nfunc     int
	textStart uint64
	funcnames []byte
	cutab     []byte
	filetab   []byte
	pctab     []byte
	pcln      []byte // functab followed by the _func structs
	gofunc    uint64 // address of go:func.*, base of funcdata offsets; 0 if unknown
	read      func(addr, n uint64) []byte
}

const (
	go120Magic          = 0xfffffff1
	go118Magic          = 0xfffffff0
	pcdataInlTreeIndex  = 2
	funcdataInlTree     = 3
	inlinedCallSize     = 16
	funcHeaderSize      = 44
	maxPCValueSteps     = 1 << 20
	moduledataTextOff   = 22 // in pointers: pcHeader, 6 slices, findfunctab, minpc, maxpc
	moduledataGofuncOff = 40
)

// newGoTable finds and checks the pclntab of a Go binary; (nil, nil) if ef
// is not one. The table is the .gopclntab section of internally linked
// binaries; externally linked ones (cgo) keep it inside .data.rel.ro or
// .rodata, found by the runtime.pclntab symbol or, stripped, by its header.
func newGoTable(ef *elf.File, data []byte, rt map[string]uint64) (*goTable, error) {
	addr, tab, err := findPclntab(ef, data, rt)
	if err != nil || tab == nil {
		return nil, err
	}
	t, err := parsePclntab(tab, ef.ByteOrder)
	if err != nil || t == nil {
		return t, err
	}
	t.read = func(addr, n uint64) []byte { return readVaddr(ef, data, addr, n) }
	t.textStart, t.gofunc = findModuledata(ef, data, addr, t.ptrSize, rt)
	if t.textStart == 0 {
		t.textStart = rt["runtime.text"]
	}
	if t.textStart == 0 {
		if s := ef.Section(".text"); s != nil {
			t.textStart = s.Addr
		}
	}
	if t.gofunc == 0 {
		t.gofunc = rt["go:func.*"]
	}
	return t, nil
}

// goSymbols are the runtime symbols the pclntab reader uses when present.
var goSymbols = map[string]bool{
	"runtime.pclntab": true, "runtime.epclntab": true, "runtime.text": true,
	"runtime.firstmoduledata": true, "go:func.*": true,
}

// runtimeSymbols picks goSymbols out of a symbol table.
func runtimeSymbols(syms []elf.Symbol) map[string]uint64 {
	vals := make(map[string]uint64)
	for _, s := range syms {
		if goSymbols[s.Name] {
			vals[s.Name] = s.Value
		}
	}
	return vals
}

// findPclntab returns the address and contents of the pclntab.
func findPclntab(ef *elf.File, data []byte, rt map[string]uint64) (uint64, []byte, error) {
	for _, name := range []string{".gopclntab", ".data.rel.ro.gopclntab"} {
		if sec := ef.Section(name); sec != nil {
			tab, err := sectionData(ef, data, name)
			return sec.Addr, tab, err
		}
	}
	if ef.Section(".go.buildinfo") == nil && ef.Section(".note.go.buildid") == nil {
		return 0, nil, nil // not Go
	}
	if start, end := rt["runtime.pclntab"], rt["runtime.epclntab"]; start != 0 && end > start {
		if tab := readVaddr(ef, data, start, end-start); tab != nil {
			return start, tab, nil
		}
	}
	// Stripped: look for the header (magic, two zero pads, quantum, pointer
	// size) at aligned offsets of the sections the linker puts it in.
	magic := make([]byte, 6)
	ef.ByteOrder.PutUint32(magic, go120Magic)
	for _, name := range []string{".data.rel.ro", ".rodata", ".noptrdata"} {
		sec := ef.Section(name)
		if sec == nil || sec.Type == elf.SHT_NOBITS {
			continue
		}
		b, err := sectionData(ef, data, name)
		if err != nil {
			continue
		}
		for off := 0; off+16 <= len(b); {
			i := bytes.Index(b[off:], magic)
			if i < 0 {
				break
			}
			off += i
			if off%8 == 0 && (b[off+6] == 1 || b[off+6] == 2 || b[off+6] == 4) && (b[off+7] == 4 || b[off+7] == 8) {
				if t, err := parsePclntab(b[off:], ef.ByteOrder); err == nil && t.nfunc > 0 {
					return sec.Addr + uint64(off), b[off:], nil
				}
			}
			off++
		}
	}
	return 0, nil, nil
}

// parsePclntab checks the header and slices out the tables; textStart and
// gofunc are left for the caller.
func parsePclntab(tab []byte, bo binary.ByteOrder) (*goTable, error) {
	if len(tab) < 8 {
		return nil, fmt.Errorf("pclntab of %d bytes: %w", len(tab), ErrFormat)
	}
	magic := bo.Uint32(tab)
	if magic != go120Magic {
		if magic == go118Magic || magic == 0xfffffffa || magic == 0xfffffffb {
			return nil, fmt.Errorf("pclntab magic %#x: Go before 1.20 is not supported: %w", magic, ErrFormat)
		}
		return nil, fmt.Errorf("pclntab magic %#x: %w", magic, ErrFormat)
	}
	t := &goTable{bo: bo, quantum: uint64(tab[6]), ptrSize: int(tab[7])}
	if t.ptrSize != 4 && t.ptrSize != 8 || t.quantum == 0 {
		return nil, fmt.Errorf("pclntab pointer size %d, quantum %d: %w", t.ptrSize, t.quantum, ErrFormat)
	}
	word := func(i int) uint64 {
		off := 8 + i*t.ptrSize
		if off+t.ptrSize > len(tab) {
			return ^uint64(0)
		}
		if t.ptrSize == 4 {
			return uint64(bo.Uint32(tab[off:]))
		}
		return bo.Uint64(tab[off:])
	}
	nfunc := word(0)
	offs := [5]uint64{word(3), word(4), word(5), word(6), word(7)} // funcname, cu, filetab, pctab, pcln
	for _, o := range offs {
		if o > uint64(len(tab)) {
			return nil, fmt.Errorf("pclntab table offset %#x beyond %d bytes: %w", o, len(tab), ErrFormat)
		}
	}
	if nfunc > uint64(len(tab))/8 {
		return nil, fmt.Errorf("pclntab claims %d functions: %w", nfunc, ErrFormat)
	}
	t.nfunc = int(nfunc)
	t.funcnames = tab[offs[0]:]
	t.cutab = tab[offs[1]:]
	t.filetab = tab[offs[2]:]
	t.pctab = tab[offs[3]:]
	t.pcln = tab[offs[4]:]
	if uint64(len(t.pcln)) < (nfunc+1)*8 {
		return nil, fmt.Errorf("pclntab functab of %d functions truncated: %w", nfunc, ErrFormat)
	}
	return t, nil
}

// findModuledata locates runtime.firstmoduledata, by symbol or, in stripped
// binaries, by scanning the data sections for a pointer to the pclntab
// followed by a pointer to its function name table, and returns its text and
// gofunc fields (layout of Go 1.20 to 1.26, runtime/symtab.go). In position-
// independent binaries linked externally the pointers are only in the
// dynamic relocations (R_*_RELATIVE addends), so those are read instead.
func findModuledata(ef *elf.File, data []byte, pclntab uint64, ptrSize int, rt map[string]uint64) (text, gofunc uint64) {
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
		if t, g, ok := check(readVaddr(ef, data, addr, size)); ok {
			return t, g
		}
	}
	if t, g, ok := moduledataFromRelocs(ef, data, pclntab, ptrSize, valid); ok {
		return t, g
	}
	var needle [8]byte
	if ptrSize == 4 {
		ef.ByteOrder.PutUint32(needle[:], uint32(pclntab))
	} else {
		ef.ByteOrder.PutUint64(needle[:], pclntab)
	}
	for _, name := range []string{".go.module", ".noptrdata", ".data", ".data.rel.ro"} {
		sec := ef.Section(name)
		if sec == nil || sec.Type == elf.SHT_NOBITS {
			continue
		}
		b, err := sectionData(ef, data, name)
		if err != nil {
			continue
		}
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
func moduledataFromRelocs(ef *elf.File, data []byte, pclntab uint64, ptrSize int,
	valid func(func(int) uint64) (uint64, uint64, bool)) (uint64, uint64, bool) {
	if ptrSize != 8 || ef.Class != elf.ELFCLASS64 {
		return 0, 0, false
	}
	rela, err := sectionData(ef, data, ".rela.dyn")
	if err != nil || len(rela) < 24 {
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

// readVaddr returns n bytes of the file's image at virtual address addr, from
// the allocated section holding it, or nil.
func readVaddr(ef *elf.File, data []byte, addr, n uint64) []byte {
	for _, s := range ef.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS || s.Flags&elf.SHF_COMPRESSED != 0 {
			continue
		}
		if addr < s.Addr || addr-s.Addr >= s.Size || n > s.Size-(addr-s.Addr) {
			continue
		}
		off := s.Offset + (addr - s.Addr)
		if off+n < off || off+n > uint64(len(data)) {
			return nil
		}
		return data[off : off+n]
	}
	return nil
}
