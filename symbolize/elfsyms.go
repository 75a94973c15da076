package symbolize

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/emberprof/ember/symbolize/gopclntab"
)

// symtab is a function symbol table sorted by address.
type symtab struct {
	syms []symbol
	full bool // built from .symtab, not just .dynsym
}

type symbol struct {
	addr, size uint64
	name       string
	file       string // of the STT_FILE symbol before a local symbol
	// alias is the name perf would show for addr when it is not name: see
	// perfPrefers. Profiles show it; RawFrames keeps llvm-symbolizer's
	// choice (name), against which the symbolizer is measured.
	alias string
	seq   int32 // position in the table, for sorting
	bind  uint8 // elf.SymBind
	stub  bool  // synthesized for a PLT stub (pltStubs), not read from a table
}

// shown is the symbol's name as a profile shows it: perf's choice among the
// aliases at its address, without a symbol version.
func (s *symbol) shown() string {
	if s.alias != "" {
		return s.alias
	}
	if s.stub {
		return s.name // NAME@plt: its '@' is no version, and NAME has none
	}
	return unversioned(s.name)
}

// unversioned drops a symbol version ("pthread_create@@GLIBC_2.34",
// "memcpy@GLIBC_2.2.5"): the assembler writes versioned definitions into
// .symtab under such names, but the function is pthread_create, which is what
// perf prints and what users search for.
func unversioned(name string) string {
	if i := strings.IndexByte(name, '@'); i > 0 {
		return name[:i]
	}
	return name
}

// perfPrefers reports whether a is a better name than b for one address, as
// perf chooses among aliases (tools/perf/util/symbol.c, choose_best_symbol):
// a sized symbol over a zero-sized one, not weak over weak, global over
// local, fewer leading underscores (malloc, not __libc_malloc), then the
// longer name. Users know the public name; llvm-symbolizer's rule (the
// largest, then the last in the table) often picks an internal one. One
// departure: before the length, a name with only a compatibility version
// (cfree@GLIBC_2.2.5, one '@') loses to the others, as new programs cannot
// link against it; perf would show free as cfree.
func perfPrefers(a, b *symbol) bool {
	if (a.size == 0) != (b.size == 0) {
		return a.size != 0
	}
	if aw, bw := a.bind == uint8(elf.STB_WEAK), b.bind == uint8(elf.STB_WEAK); aw != bw {
		return bw
	}
	if ag, bg := a.bind == uint8(elf.STB_GLOBAL), b.bind == uint8(elf.STB_GLOBAL); ag != bg {
		return ag
	}
	an, bn := unversioned(a.name), unversioned(b.name)
	if au, bu := leadingUnderscores(an), leadingUnderscores(bn); au != bu {
		return au < bu
	}
	if ac, bc := compatOnly(a.name), compatOnly(b.name); ac != bc {
		return bc
	}
	return len(an) > len(bn)
}

// compatOnly reports a name versioned NAME@VERSION, a binding kept for old
// binaries (the default version is NAME@@VERSION).
func compatOnly(name string) bool {
	i := strings.IndexByte(name, '@')
	return i > 0 && !strings.HasPrefix(name[i:], "@@")
}

func leadingUnderscores(s string) int {
	n := 0
	for n < len(s) && s[n] == '_' {
		n++
	}
	return n
}

func (t *symtab) empty() bool { return t == nil || len(t.syms) == 0 }

func (t *symtab) cost() int64 {
	if t == nil {
		return 0
	}
	c := int64(len(t.syms)) * 40
	for _, s := range t.syms {
		c += int64(len(s.name))
	}
	return c
}

// newSymtab reads the function symbols of .symtab, or .dynsym if there is no
// .symtab, and returns the values of the Go runtime symbols the pclntab
// reader may need. Like llvm-symbolizer, a symbol of size 0 covers everything up to the
// next symbol. data is the image ef was opened from. The table also names
// the PLT stubs no symbol covers, NAME@plt, as perf does (pltStubs).
func newSymtab(ef *elf.File, data []byte) (*symtab, map[string]uint64, error) {
	t := &symtab{}
	var rt map[string]uint64
	sec := ef.SectionByType(elf.SHT_SYMTAB)
	if sec != nil {
		t.full = true
		rt = make(map[string]uint64)
	} else {
		sec = ef.SectionByType(elf.SHT_DYNSYM)
	}
	if sec != nil {
		if err := t.read(ef, data, sec, rt); err != nil {
			return t, rt, fmt.Errorf("symbols: %w", err)
		}
		t.sort()
	}
	stubs, err := pltStubs(ef, data)
	t.addStubs(stubs)
	if err != nil {
		return t, rt, fmt.Errorf("symbols: %w", err)
	}
	return t, rt, nil
}

// readSymtab is newSymtab of the ELF image data, parsed anew: an Object
// reads its symbols later than it is opened (indexObject), when the shared
// elf.File it was opened with may be another reader's.
func readSymtab(data []byte) (*symtab, error) {
	ef, err := elf.NewFile(bytesReaderAt(data))
	if err != nil {
		return nil, fmt.Errorf("symbols: %w: %w", ErrFormat, err)
	}
	t, _, err := newSymtab(ef, data)
	return t, err
}

// read adds the symbols of the symbol table sec that a profile can name,
// reading its entries and their names where they lie in data. debug/elf's
// Symbols would first copy the table and make a string of every name, kept
// or not: a Go binary's 30,000 symbols were most of the allocations, and so
// of the collector's work, of a whole-system recording. rt, when not nil,
// gets the values of the Go runtime symbols (gopclntab.Symbols).
func (t *symtab) read(ef *elf.File, data []byte, sec *elf.Section, rt map[string]uint64) error {
	entSize := uint64(elf.Sym64Size)
	if ef.Class == elf.ELFCLASS32 {
		entSize = elf.Sym32Size
	}
	syms, err := sectionContents(ef, sec, data, heapBuffer)
	if err != nil {
		return err
	}
	if uint64(len(syms))%entSize != 0 {
		return fmt.Errorf("%w: %s is %d bytes, not a whole number of %d-byte entries", ErrFormat, sec.Name, len(syms), entSize)
	}
	if sec.Link == 0 || int(sec.Link) >= len(ef.Sections) {
		return fmt.Errorf("%w: %s links to no string table (section %d)", ErrFormat, sec.Name, sec.Link)
	}
	strs, err := sectionContents(ef, ef.Sections[sec.Link], data, heapBuffer)
	if err != nil {
		return err
	}
	bo := ef.ByteOrder
	file := ""
	for off := entSize; off+entSize <= uint64(len(syms)); off += entSize { // entry 0 is the null symbol
		e := syms[off : off+entSize]
		var nameOff uint32
		var info uint8
		var shndx elf.SectionIndex
		var value, size uint64
		if entSize == elf.Sym64Size {
			nameOff, info, shndx = bo.Uint32(e), e[4], elf.SectionIndex(bo.Uint16(e[6:]))
			value, size = bo.Uint64(e[8:]), bo.Uint64(e[16:])
		} else {
			nameOff, value, size = bo.Uint32(e), uint64(bo.Uint32(e[4:])), uint64(bo.Uint32(e[8:]))
			info, shndx = e[12], elf.SectionIndex(bo.Uint16(e[14:]))
		}
		name := cString(strs, nameOff)
		typ := elf.ST_TYPE(info)
		if typ == elf.STT_FILE {
			file = string(name)
			continue
		}
		if rt != nil && gopclntab.Symbols[string(name)] {
			rt[string(name)] = value
		}
		// The symbols llvm-symbolizer uses: functions, data, and untyped
		// symbols (common in assembly), in allocated sections.
		switch typ {
		case elf.STT_FUNC, elf.STT_GNU_IFUNC, elf.STT_OBJECT, elf.STT_NOTYPE:
		default:
			continue
		}
		if shndx == elf.SHN_UNDEF || shndx >= elf.SHN_LORESERVE || len(name) == 0 || name[0] == '$' {
			continue
		}
		if int(shndx) < len(ef.Sections) && ef.Sections[shndx].Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		sym := symbol{addr: value, size: size, name: string(name[:min(len(name), maxNameLen)]), bind: uint8(elf.ST_BIND(info))}
		if elf.ST_BIND(info) == elf.STB_LOCAL {
			sym.file = file
		}
		t.syms = append(t.syms, sym)
	}
	return nil
}

// cString returns the NUL-terminated string at off in strs, without its NUL;
// empty when off is outside strs.
func cString(strs []byte, off uint32) []byte {
	if uint64(off) >= uint64(len(strs)) {
		return nil
	}
	b := strs[off:]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// sort orders symbols by address and keeps one per address, chosen as
// llvm-symbolizer does: the largest, and of equal sizes the last in the
// table (a global after its local aliases). The one kept also carries the
// name perf would pick among them (alias), which profiles show.
func (t *symtab) sort() {
	for i := range t.syms {
		t.syms[i].seq = int32(i)
	}
	slices.SortFunc(t.syms, func(a, b symbol) int {
		if c := cmpU64(a.addr, b.addr); c != 0 {
			return c
		}
		if c := cmpU64(a.size, b.size); c != 0 {
			return c
		}
		return int(a.seq - b.seq)
	})
	out := t.syms[:0]
	best := -1 // perf's choice in the run of symbols at one address
	for i := range t.syms {
		if best < 0 || t.syms[best].addr != t.syms[i].addr || perfPrefers(&t.syms[i], &t.syms[best]) {
			best = i
		}
		if i+1 < len(t.syms) && t.syms[i+1].addr == t.syms[i].addr {
			continue
		}
		s := t.syms[i]
		s.alias = ""
		if b := t.syms[best].shown(); b != s.name {
			s.alias = b
		}
		out = append(out, s)
		best = -1
	}
	t.syms = slices.Clip(out)
}

func mergeSymtabs(a, b *symtab) *symtab {
	t := &symtab{full: a.full || b.full}
	t.syms = append(append(t.syms, a.syms...), b.syms...) // b's after a's: b wins ties
	t.sort()
	return t
}

// lookup returns the function symbol holding addr; its file is the one an
// STT_FILE symbol gives for it (local symbols only), as llvm-symbolizer uses.
func (t *symtab) lookup(addr uint64) (sym *symbol, ok bool) {
	if t == nil {
		return nil, false
	}
	i, _ := slices.BinarySearchFunc(t.syms, addr+1, func(s symbol, a uint64) int {
		if s.addr < a {
			return -1
		}
		return 1
	})
	if i == 0 {
		return nil, false
	}
	s := &t.syms[i-1]
	if s.size != 0 && addr-s.addr >= s.size {
		return nil, false
	}
	return s, true
}

type bytesReaderAtType struct{ b []byte }

func bytesReaderAt(b []byte) io.ReaderAt { return &bytesReaderAtType{b} }

// ReadAt copies from the (possibly mapped) image.
func (r *bytesReaderAtType) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// sectionData returns the contents of the named section: a slice of data when
// it is stored uncompressed, or a decompressed copy (zlib or zstd,
// SHF_COMPRESSED, or the older .zdebug form) capped at maxSectionSize.
// A missing section is (nil, nil).
func sectionData(ef *elf.File, data []byte, name string) ([]byte, error) {
	return sectionDataInto(ef, data, name, heapBuffer)
}

// sectionDataInto is sectionData decompressing into the buffer buf returns
// for a compressed section's size.
func sectionDataInto(ef *elf.File, data []byte, name string, buf func(int) []byte) ([]byte, error) {
	s := ef.Section(name)
	if s == nil && strings.HasPrefix(name, ".debug_") {
		if z := ef.Section(".zdebug_" + name[len(".debug_"):]); z != nil {
			return zdebugData(z, data, buf)
		}
	}
	if s == nil {
		return nil, nil
	}
	return sectionContents(ef, s, data, buf)
}

// sectionContents is sectionDataInto of the section s: a slice of data
// when s is stored uncompressed, a copy decompressed into buf's buffer when
// SHF_COMPRESSED, nil when it has no bytes in the file (SHT_NOBITS).
func sectionContents(ef *elf.File, s *elf.Section, data []byte, buf func(int) []byte) ([]byte, error) {
	if s.Type == elf.SHT_NOBITS {
		return nil, nil
	}
	b, err := fileBytes(s, data)
	if err != nil || s.Flags&elf.SHF_COMPRESSED == 0 {
		return b, err
	}
	return compressedSectionInto(s.Name, b, ef.Class, ef.ByteOrder, buf)
}

// fileBytes returns the bytes s occupies in the image data, or an error
// when they do not all lie in it.
func fileBytes(s *elf.Section, data []byte) ([]byte, error) {
	end := s.Offset + s.FileSize
	if end < s.Offset || end > uint64(len(data)) {
		return nil, fmt.Errorf("section %s [%#x, %#x) beyond end of file: %w", s.Name, s.Offset, end, ErrFormat)
	}
	return data[s.Offset:end:end], nil
}

// hasDWARF reports whether ef has DWARF debug info (possibly compressed).
func hasDWARF(ef *elf.File) bool {
	for _, n := range []string{".debug_info", ".zdebug_info"} {
		if s := ef.Section(n); s != nil && s.Type != elf.SHT_NOBITS && s.Size > 0 {
			return true
		}
	}
	return false
}
