package symbolize

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// PLT stubs have no ELF symbol, yet a sample can land in one: a preemption
// in the stub a call into another library goes through (a real profile had
// libc's __pthread_tunables_init preempted in its realloc stub) would leave
// an unnamed frame. perf and objdump name such a stub NAME@plt, after the
// function it jumps to, and so does Ember: pltStubs synthesizes a sized
// symbol for each stub, which newSymtab adds to the object's symbol table.
//
// A stub is named by what it does, not by its position: the GOT slot its
// indirect jump reads is matched to the dynamic relocation that fills that
// slot, whose symbol names the stub. Counting stubs in .rela.plt order
// would misname them when IRELATIVE relocations or a second PLT section
// (.plt.sec, .plt.got) break the correspondence.
//
// Only x86-64 stubs are decoded. arm64's (adrp, ldr, add, br) and i386's
// are not: their frames stay unnamed, as before.

// pltSections are the sections that hold x86-64 PLT stubs, with the size of
// their entries when the section header gives none.
var pltSections = []struct {
	name      string
	entSize   uint64
	skipFirst bool // PLT0, the lazy resolver's entry, calls no function
	useHeader bool // the header's sh_entsize, when not 0, is the entry size
}{
	{".plt", 16, true, false},
	{".plt.sec", 16, false, false},
	{".plt.got", 16, false, true},
}

// rX86_64IRELATIVE is R_X86_64_IRELATIVE: a slot filled by calling an ifunc
// resolver at the addend, with no symbol.
const rX86_64IRELATIVE = uint32(elf.R_X86_64_IRELATIVE)

// pltStubs returns a symbol NAME@plt for each x86-64 PLT stub of ef whose
// GOT slot a dynamic relocation names, covering the stub's entry exactly.
// A stub that cannot be decoded, or whose slot no relocation fills, is left
// out; an error says a PLT or relocation section lies outside data, and the
// stubs found elsewhere are still returned.
func pltStubs(ef *elf.File, data []byte) ([]symbol, error) {
	if ef.Machine != elf.EM_X86_64 || ef.Class != elf.ELFCLASS64 {
		return nil, nil
	}
	var errs []error
	// The stubs, by the GOT slot each jumps through.
	bySlot := make(map[uint64][]symbol)
	for _, ps := range pltSections {
		sec := ef.Section(ps.name)
		if sec == nil || sec.Type != elf.SHT_PROGBITS || sec.Flags&elf.SHF_COMPRESSED != 0 {
			continue
		}
		code, err := fileBytes(sec, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ent := ps.entSize
		if ps.useHeader && sec.Entsize != 0 {
			ent = sec.Entsize
		}
		if ent < 6 || ent > 64 { // no room for the jump, or no x86-64 PLT
			continue
		}
		off := uint64(0)
		if ps.skipFirst {
			off = ent
		}
		for ; off+ent <= uint64(len(code)); off += ent {
			addr := sec.Addr + off
			if slot, ok := stubSlot(code[off:off+ent], addr); ok {
				bySlot[slot] = append(bySlot[slot], symbol{addr: addr, size: ent, bind: uint8(elf.STB_GLOBAL), stub: true})
			}
		}
	}
	if len(bySlot) == 0 {
		return nil, joinErrs(errs)
	}
	var out []symbol
	for _, sec := range ef.Sections {
		if sec.Type != elf.SHT_RELA || sec.Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		named, err := nameStubs(ef, data, sec, bySlot)
		if err != nil {
			errs = append(errs, err)
		}
		out = append(out, named...)
	}
	slices.SortFunc(out, func(a, b symbol) int { return cmpU64(a.addr, b.addr) })
	// One name per stub: the first relocation of a slot.
	out = slices.CompactFunc(out, func(a, b symbol) bool { return a.addr == b.addr })
	return out, joinErrs(errs)
}

func joinErrs(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("plt: %w", errors.Join(errs...))
}

// stubSlot decodes the x86-64 stub b at addr, `jmp *disp32(%rip)` (ff 25),
// possibly after endbr64 (f3 0f 1e fa) and a bnd prefix (f2), and returns
// the address of the GOT slot it jumps through: the next instruction's
// address plus disp32. ok is false for any other first instruction (PLT0,
// an IBT lazy stub that pushes and jumps to PLT0).
func stubSlot(b []byte, addr uint64) (slot uint64, ok bool) {
	i := 0
	if len(b) >= 4 && b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && b[3] == 0xfa {
		i = 4
	}
	if i < len(b) && b[i] == 0xf2 {
		i++
	}
	if i+6 > len(b) || b[i] != 0xff || b[i+1] != 0x25 {
		return 0, false
	}
	disp := int32(binary.LittleEndian.Uint32(b[i+2:]))
	return addr + uint64(i+6) + uint64(int64(disp)), true
}

// nameStubs names the stubs of bySlot whose slots the relocations of the
// SHT_RELA section rela fill (JUMP_SLOT in .rela.plt, GLOB_DAT in .rela.dyn
// for .plt.got): the relocation's symbol, unversioned, + "@plt". A slot
// filled by an IRELATIVE relocation, which has no symbol, is named
// "*ABS*+0xADDEND@plt", as objdump names it.
func nameStubs(ef *elf.File, data []byte, rela *elf.Section, bySlot map[uint64][]symbol) ([]symbol, error) {
	const relaSize = 24 // Elf64_Rela
	relocs, err := fileBytes(rela, data)
	if err != nil || rela.Flags&elf.SHF_COMPRESSED != 0 {
		return nil, err
	}
	// The dynamic symbol table the relocations refer to, and its names;
	// missing or unreadable, only IRELATIVE stubs are named.
	var syms, strs []byte
	if l := int(rela.Link); l > 0 && l < len(ef.Sections) && ef.Sections[l].Type == elf.SHT_DYNSYM {
		symSec := ef.Sections[l]
		syms, _ = fileBytes(symSec, data)
		if s := int(symSec.Link); s > 0 && s < len(ef.Sections) && ef.Sections[s].Type == elf.SHT_STRTAB {
			strs, _ = fileBytes(ef.Sections[s], data)
		}
	}
	bo := ef.ByteOrder
	var out []symbol
	for off := 0; off+relaSize <= len(relocs); off += relaSize {
		r := relocs[off : off+relaSize]
		stubs := bySlot[bo.Uint64(r)]
		if len(stubs) == 0 {
			continue
		}
		info := bo.Uint64(r[8:])
		symIdx, typ := info>>32, uint32(info)
		var name string
		switch {
		case symIdx != 0:
			e := symIdx * elf.Sym64Size
			if e/elf.Sym64Size != symIdx || e+elf.Sym64Size > uint64(len(syms)) {
				continue
			}
			name = unversioned(string(cString(strs, bo.Uint32(syms[e:]))))
		case typ == rX86_64IRELATIVE:
			name = fmt.Sprintf("*ABS*+%#x", bo.Uint64(r[16:]))
		}
		if name == "" {
			continue
		}
		name += "@plt"
		for _, s := range stubs {
			s.name = name[:min(len(name), maxNameLen)]
			out = append(out, s)
		}
	}
	return out, nil
}

// addStubs adds to the sorted table t the stub symbols of stubs at
// addresses where t has no symbol of its own: a real symbol at a stub's
// address keeps its name.
func (t *symtab) addStubs(stubs []symbol) {
	n := len(t.syms)
	for _, s := range stubs {
		if !s.stub {
			continue
		}
		if _, found := slices.BinarySearchFunc(t.syms[:n], s.addr, func(x symbol, a uint64) int { return cmpU64(x.addr, a) }); !found {
			t.syms = append(t.syms, s)
		}
	}
	if len(t.syms) == n {
		return
	}
	// Addresses are unique, so the order is total; seq, which only breaks
	// ties in sort, is left as it was.
	slices.SortFunc(t.syms, func(a, b symbol) int { return cmpU64(a.addr, b.addr) })
	t.syms = slices.Clip(t.syms)
}

// withStubs returns dbg, the symbol table of o's separate debug file, with
// the PLT stubs of o's own table main: a debug file keeps no code, so its
// PLT sections are empty and main's stubs are the only ones.
func withStubs(dbg, main *symtab) *symtab {
	if main == nil || !slices.ContainsFunc(main.syms, func(s symbol) bool { return s.stub }) {
		return dbg
	}
	t := &symtab{full: dbg.full, syms: slices.Clone(dbg.syms)}
	t.addStubs(main.syms)
	return t
}
