package symbolize

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/symbolize/gopclntab"
)

// The symbol table Ember reads in place is the one debug/elf's Symbols (or
// DynamicSymbols) gives, filtered by the same rule, for a Go binary's
// .symtab, a stripped C program's .dynsym, the C library, and a 32-bit
// static program; and the Go runtime symbols are the same.
func TestSymtabMatchesDebugELF(t *testing.T) {
	goFull, _ := goBuild(false)(t)
	files := []string{goFull, "/bin/ls", "/lib/x86_64-linux-gnu/libc.so.6"}
	if gcc, err := exec.LookPath("gcc"); err == nil {
		files = append(files, built(t, "tiny-m32", func(dir, o string) {
			run(t, dir, gcc, "-m32", "-O2", "-nostdlib", "-static", "-Wl,-n", "-o", o, srcPath(t, "tiny.c"))
		}))
	} else if testutil.Required() {
		t.Fatal("gcc is not installed")
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		ef, err := elf.NewFile(bytesReaderAt(data))
		if err != nil {
			t.Fatal(err)
		}
		got, gotRT, err := newSymtab(ef, data)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		want, wantRT := referenceSymtab(t, ef)
		// The PLT stubs Ember names are in no table debug/elf reads;
		// TestPLTNamesMatchObjdump checks them against objdump.
		got.syms = slices.DeleteFunc(slices.Clone(got.syms), func(s symbol) bool { return s.stub })
		if len(got.syms) == 0 || !slices.Equal(got.syms, want.syms) || got.full != want.full {
			t.Errorf("%s: %d symbols (full %v), debug/elf gives %d (full %v)", path, len(got.syms), got.full, len(want.syms), want.full)
		}
		if len(gotRT) != len(wantRT) {
			t.Errorf("%s: runtime symbols %v, debug/elf gives %v", path, gotRT, wantRT)
		}
		for k, v := range wantRT {
			if gotRT[k] != v {
				t.Errorf("%s: %s = %#x, debug/elf gives %#x", path, k, gotRT[k], v)
			}
		}
		t.Logf("%s: %d symbols, full %v, %d runtime symbols", path, len(got.syms), got.full, len(gotRT))
	}
	if t.Failed() {
		return
	}
	// A table that links to no string table is an error, not a panic.
	data, _ := os.ReadFile(files[0])
	ef, _ := elf.NewFile(bytesReaderAt(data))
	sec := ef.SectionByType(elf.SHT_SYMTAB)
	sec.Link = 0
	if _, _, err := newSymtab(ef, data); !errors.Is(err, ErrFormat) {
		t.Errorf("symbol table without a string table: %v, want ErrFormat", err)
	}
}

// referenceSymtab is the symbol table by debug/elf's reading and the rule
// of symtab.read: the reading Ember used before it read tables in place.
func referenceSymtab(t *testing.T, ef *elf.File) (*symtab, map[string]uint64) {
	tab := &symtab{full: true}
	syms, err := ef.Symbols()
	var rt map[string]uint64
	if err == nil {
		rt = gopclntab.RuntimeSymbols(syms)
	} else if errors.Is(err, elf.ErrNoSymbols) {
		tab.full = false
		syms, err = ef.DynamicSymbols()
	}
	if err != nil {
		t.Fatal(err)
	}
	file := ""
	for _, s := range syms {
		typ := elf.ST_TYPE(s.Info)
		if typ == elf.STT_FILE {
			file = s.Name
			continue
		}
		switch typ {
		case elf.STT_FUNC, elf.STT_GNU_IFUNC, elf.STT_OBJECT, elf.STT_NOTYPE:
		default:
			continue
		}
		if s.Section == elf.SHN_UNDEF || s.Section >= elf.SHN_LORESERVE || s.Name == "" || s.Name[0] == '$' {
			continue
		}
		if int(s.Section) < len(ef.Sections) && ef.Sections[s.Section].Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		sym := symbol{addr: s.Value, size: s.Size, name: s.Name, bind: uint8(elf.ST_BIND(s.Info))}
		if elf.ST_BIND(s.Info) == elf.STB_LOCAL {
			sym.file = file
		}
		tab.syms = append(tab.syms, sym)
	}
	tab.sort()
	return tab, rt
}
