package unwind

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/emberprof/ember/symbolize/gopclntab"
)

// Fuzz targets for the parsers. Run one with, for example:
//
//	go test -run '^$' -fuzz FuzzBuildTable -fuzztime 60s ./unwind

func addSectionSeeds(f *testing.F) {
	// A real .eh_frame and .debug_frame from the test binaries.
	for _, name := range []string{"chain-O2-omitfp", "chain-O2-debugframe", "shapes-O2"} {
		path := buildBinary(f, name)
		ef, err := elf.Open(path)
		if err != nil {
			f.Fatal(err)
		}
		for _, sec := range []string{".eh_frame", ".debug_frame"} {
			if s := ef.Section(sec); s != nil {
				data, err := s.Data()
				if err != nil {
					f.Fatal(err)
				}
				kind := EHFrame
				if sec == ".debug_frame" {
					kind = DebugFrame
				}
				f.Add(data, uint8(kind), s.Addr, uint8(AMD64))
				if len(data) > 256 {
					f.Add(data[:256], uint8(kind), s.Addr, uint8(ARM64))
				}
			}
		}
		ef.Close()
	}
	f.Add([]byte{}, uint8(EHFrame), uint64(0), uint8(AMD64))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}, uint8(DebugFrame), uint64(0), uint8(AMD64))
}

func FuzzBuildTable(f *testing.F) {
	addSectionSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, kind uint8, addr uint64, arch uint8) {
		sec := Section{Kind: SectionKind(kind % 2), Data: data, Addr: addr}
		tab, err := buildTable(Arch(arch%2+1), []Section{sec}, nil)
		if err != nil {
			if strings.Contains(err.Error(), "internal error") {
				t.Fatalf("panic: %v", err)
			}
			var de *DecodeError
			if errors.As(err, &de) {
				if de.Offset > uint64(len(data)) {
					t.Errorf("error offset %#x past %d bytes: %v", de.Offset, len(data), err)
				}
			} else if !errors.Is(err, ErrTooLarge) {
				t.Errorf("error of type %T: %v", err, err)
			}
			return
		}
		for _, err := range tab.Errors {
			var de *DecodeError
			if !errors.As(err, &de) || de.Offset > uint64(len(data)) {
				t.Errorf("FDE error %v", err)
			}
		}
		// Bounded output: every raw row needs an instruction byte or an
		// FDE, and an FDE takes at least 8 bytes.
		if len(tab.Rows) > len(data)+len(data)/8+1 {
			t.Errorf("%d rows from %d bytes", len(tab.Rows), len(data))
		}
		for i := 1; i < len(tab.Rows); i++ {
			if tab.Rows[i].PC <= tab.Rows[i-1].PC {
				t.Fatalf("rows out of order at %d: %#x after %#x", i, tab.Rows[i].PC, tab.Rows[i-1].PC)
			}
			if tab.Rows[i].sameRules(tab.Rows[i-1]) {
				t.Fatalf("unmerged rows at %d", i)
			}
		}
		if len(tab.Rows) > 0 && tab.Rows[len(tab.Rows)-1].PC-tab.Rows[0].PC < 1<<24 {
			checkEncoding(t, tab)
		}
	})
}

// FuzzUnwind walks arbitrary map contents and memory: the walker must stop
// with a reason, never panic or loop.
func FuzzUnwind(f *testing.F) {
	f.Add([]byte{}, []byte{}, []byte{}, []byte{}, []byte{}, []byte{}, uint64(0x1000), uint64(0x7000), uint64(0))
	var seed Maps
	if _, err := seed.AddTable(&Table{Arch: AMD64, Rows: []Row{{PC: 0x1000, CFA: CFASP, CFAOffset: 8, RA: RAOffset, RAOffset: -8}, {PC: 0x1100}}}); err != nil {
		f.Fatal(err)
	}
	pb, _ := EncodeProc([]Mapping{{Start: 0x1000, End: 0x2000}})
	f.Add(seed.Rows, seed.Rules, seed.Pages, seed.Tables, pb, make([]byte, 64), uint64(0x1004), uint64(0x7000), uint64(0))
	f.Fuzz(func(t *testing.T, rows, rules, pages, tables, proc, mem []byte, pc, sp, fp uint64) {
		if len(proc) < ProcSize {
			proc = append(proc, make([]byte, ProcSize-len(proc))...)
		}
		m := &Maps{Rows: rows, Rules: rules, Pages: pages, Tables: tables, Procs: map[uint32][]byte{1: proc[:ProcSize]}}
		read := func(addr uint64, n int) ([]byte, error) {
			off := addr - sp
			if off >= uint64(len(mem)) || uint64(len(mem))-off < uint64(n) {
				return nil, errors.New("unmapped")
			}
			return mem[off : off+uint64(n)], nil
		}
		pcs, reason := Unwind(Regs{PC: pc, SP: sp, FP: fp}, read, m, 1)
		if len(pcs) > MaxFrames || reason >= numReasons {
			t.Fatalf("%d frames, reason %v", len(pcs), reason)
		}
	})
}

// FuzzGoRows turns arbitrary pclntab bytes into rows: no panic, errors
// wrapped, rows sorted and merged. Seeded with the pclntab of the Go test
// program for both architectures.
func FuzzGoRows(f *testing.F) {
	for _, goarch := range []string{"amd64", "arm64"} {
		ef, err := elf.Open(buildGo(f, goarch, true))
		if err != nil {
			f.Fatal(err)
		}
		pt, err := gopclntab.Find(ef, elfImage{ef}, nil)
		if err != nil || pt == nil {
			f.Fatalf("pclntab: %v", err)
		}
		data, err := ef.Section(".gopclntab").Data()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, pt.TextStart, uint8(ef.Machine&1))
		f.Add(data[:min(len(data), 4096)], pt.TextStart, uint8(0))
		ef.Close()
	}
	f.Add([]byte{0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8}, uint64(0x401000), uint8(0))
	f.Fuzz(func(t *testing.T, tab []byte, text uint64, arch uint8) {
		pt, err := gopclntab.Parse(tab, binary.LittleEndian)
		if err != nil {
			if !errors.Is(err, gopclntab.ErrFormat) && !errors.Is(err, gopclntab.ErrOldGo) {
				t.Fatalf("unwrapped error %v", err)
			}
			return
		}
		pt.TextStart = text
		rows, _, err := GoRows(Arch(arch%2+1), pt, func(uint64) (byte, bool) { return 0x55, true })
		if err != nil {
			if strings.Contains(err.Error(), "internal error") {
				t.Fatalf("panic: %v", err)
			}
			return
		}
		for i := 1; i < len(rows); i++ {
			if rows[i].PC <= rows[i-1].PC || rows[i].sameRules(rows[i-1]) {
				t.Fatalf("rows %d and %d: %+v %+v", i-1, i, rows[i-1], rows[i])
			}
		}
	})
}
