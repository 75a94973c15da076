package symbolize

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
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
}

// shown is the symbol's name as a profile shows it: perf's choice among the
// aliases at its address, without a symbol version.
func (s *symbol) shown() string {
	if s.alias != "" {
		return s.alias
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
// next symbol.
func newSymtab(ef *elf.File) (*symtab, map[string]uint64, error) {
	t := &symtab{}
	var rt map[string]uint64
	syms, err := ef.Symbols()
	if err == nil {
		rt = runtimeSymbols(syms)
		t.full = true
	} else if errors.Is(err, elf.ErrNoSymbols) {
		syms, err = ef.DynamicSymbols()
		if errors.Is(err, elf.ErrNoSymbols) {
			return t, rt, nil
		}
	}
	if err != nil {
		return t, rt, fmt.Errorf("symbols: %w: %w", ErrFormat, err)
	}
	t.add(syms, ef.Sections)
	t.sort()
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
	t, _, err := newSymtab(ef)
	return t, err
}

func (t *symtab) add(syms []elf.Symbol, sections []*elf.Section) {
	file := ""
	for _, s := range syms {
		typ := elf.ST_TYPE(s.Info)
		if typ == elf.STT_FILE {
			file = s.Name
			continue
		}
		// The symbols llvm-symbolizer uses: functions, data, and untyped
		// symbols (common in assembly), in allocated sections.
		switch typ {
		case elf.STT_FUNC, elf.STT_GNU_IFUNC, elf.STT_OBJECT, elf.STT_NOTYPE:
		default:
			continue
		}
		if s.Section == elf.SHN_UNDEF || s.Section >= elf.SHN_LORESERVE || s.Name == "" || s.Name[0] == '$' {
			continue
		}
		if int(s.Section) < len(sections) && sections[s.Section].Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		name := s.Name
		if len(name) > maxNameLen {
			name = name[:maxNameLen]
		}
		sym := symbol{addr: s.Value, size: s.Size, name: name, bind: uint8(elf.ST_BIND(s.Info))} // debug/elf's strings are copies already
		if elf.ST_BIND(s.Info) == elf.STB_LOCAL {
			sym.file = file
		}
		t.syms = append(t.syms, sym)
	}
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
	s := ef.Section(name)
	if s == nil && strings.HasPrefix(name, ".debug_") {
		if z := ef.Section(".zdebug_" + name[len(".debug_"):]); z != nil {
			return zdebugData(z, data)
		}
	}
	if s == nil || s.Type == elf.SHT_NOBITS {
		return nil, nil
	}
	end := s.Offset + s.FileSize
	if end < s.Offset || end > uint64(len(data)) {
		return nil, fmt.Errorf("section %s [%#x, %#x) beyond end of file: %w", name, s.Offset, end, ErrFormat)
	}
	if s.Flags&elf.SHF_COMPRESSED == 0 {
		return data[s.Offset:end:end], nil
	}
	return compressedSection(name, data[s.Offset:end], ef.Class, ef.ByteOrder)
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
