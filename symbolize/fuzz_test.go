package symbolize

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/symbolize/gopclntab"
)

// Fuzz targets, one per parser. In a plain `go test` run each executes only
// its seed corpus; fuzz one with, for example,
//
//	go test ./symbolize -run '^$' -fuzz '^FuzzELF$' -fuzztime 1m -fuzzminimizetime 2s
//
// (With the default minimization time of a minute, minimizing the first
// interesting ELF or pclntab input can take the whole run while the progress
// line shows few execs.)
//
// Seeds are real files built or read at test time: small ELF images from
// testdata/tiny.c (gcc DWARF 4 and 5, zlib, no DWARF; clang DWARF 5), a Go pclntab, this machine's
// /proc/self/maps and the head of /proc/kallsyms.

// tinyELFs builds the seed ELF images, if gcc is installed.
func tinyELFs(f *testing.F) [][]byte {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if testutil.Required() {
			f.Fatal("gcc is not installed")
		}
		return nil
	}
	var out [][]byte
	type variant struct {
		cc    string
		flags []string
	}
	variants := []variant{{gcc, []string{"-gdwarf-4"}}, {gcc, []string{"-gdwarf-5"}}, {gcc, []string{"-g", "-gz=zlib"}}, {gcc, []string{"-g0"}}}
	if clang, err := exec.LookPath("clang-19"); err == nil {
		// clang's DWARF 5 uses the indexed forms (strx, addrx, rnglistx).
		variants = append(variants, variant{clang, []string{"-gdwarf-5"}})
	}
	for _, v := range variants {
		key := "tiny-" + filepath.Base(v.cc) + strings.Join(v.flags, "")
		p := built(f, key, func(dir, o string) {
			args := append([]string{"-O2", "-nostdlib", "-static", "-Wl,-n", "-Wl,--build-id", "-o", o}, v.flags...)
			run(f, dir, v.cc, append(args, srcPath(f, "tiny.c"))...)
		})
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func fuzzing() func() {
	old := panicOnBug
	panicOnBug = true
	return func() { panicOnBug = old }
}

func FuzzELF(f *testing.F) {
	for _, b := range tinyELFs(f) {
		f.Add(b)
	}
	// Dynamically linked, with PLT stubs for pltStubs to decode.
	for _, p := range pltPrograms(f) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	defer fuzzing()()
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := newObjectBytes(data, "fuzz")
		if err != nil {
			return
		}
		// Addresses at and around every loadable segment and symbol.
		for _, p := range o.loads {
			for _, a := range []uint64{p.Vaddr, p.Vaddr + p.Memsz/2, p.Vaddr + p.Memsz - 1} {
				o.Frames(a)
			}
		}
		if o.syms != nil {
			for i, s := range o.syms.syms {
				if i > 64 {
					break
				}
				o.Frames(s.addr + s.size/2)
			}
		}
	})
}

// FuzzDWARF feeds the DWARF sections of the seeds, mutated, to the index:
// unit headers, abbreviations, DIEs and their forms, range lists, line
// programs (DWARF 2 to 5 headers and file tables) and name resolution.
func FuzzDWARF(f *testing.F) {
	for _, b := range tinyELFs(f) {
		ef, err := elf.NewFile(bytesReaderAt(b))
		if err != nil {
			f.Fatal(err)
		}
		secs := make([][]byte, 9) // in the order of dwarfSections
		for i, n := range dwarfSections {
			secs[i], _ = sectionData(ef, b, ".debug_"+n)
		}
		if len(secs[1]) > 0 {
			f.Add(secs[0], secs[1], secs[2], secs[3], secs[4], secs[5], secs[6], secs[7], secs[8], uint64(0x100))
		}
	}
	defer fuzzing()()
	f.Fuzz(func(t *testing.T, abbrev, info, line, str, ranges, addr, lineStr, strOffsets, rnglists []byte, pc uint64) {
		secs := make(map[string][]byte)
		for i, b := range [][]byte{abbrev, info, line, str, ranges, addr, lineStr, strOffsets, rnglists} {
			secs[dwarfSections[i]] = b
		}
		ix, err := newDWARFIndexSections(secs, binary.LittleEndian)
		if err != nil || ix == nil {
			return
		}
		ix.frames(pc)
		for i, r := range ix.ranges {
			if i > 32 {
				break
			}
			ix.frames(r.low)
			ix.frames(r.low + (r.high-r.low)/2)
		}
	})
}

func FuzzPclntab(f *testing.F) {
	if stripped, _ := goBuildSeed(f); stripped != nil {
		f.Add(stripped.tab, stripped.gofunc, stripped.text, uint64(0x1000))
	}
	f.Add([]byte{0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8}, []byte{}, uint64(0x401000), uint64(0))
	defer fuzzing()()
	f.Fuzz(func(t *testing.T, tab, gofunc []byte, text, off uint64) {
		pt, err := gopclntab.Parse(tab, binary.LittleEndian)
		if err != nil {
			return
		}
		const base = 0x10000000
		pt.TextStart, pt.Gofunc = text, base
		gt := &goTable{Table: pt}
		gt.read = func(addr, n uint64) []byte {
			if addr < base || addr-base > uint64(len(gofunc)) || n > uint64(len(gofunc))-(addr-base) {
				return nil
			}
			return gofunc[addr-base : addr-base+n]
		}
		gt.frames(text + off)
		for i := 0; i < gt.NFunc && i < 16; i++ {
			if f, err := gt.Func(i); err == nil {
				gt.frames(f.Entry + 1)
			}
		}
	})
}

type pclnSeed struct {
	tab, gofunc []byte
	text        uint64
}

// goBuildSeed reads the pclntab and the start of go:func.* of the Go test
// workload.
func goBuildSeed(f *testing.F) (*pclnSeed, error) {
	if _, err := exec.LookPath("go"); err != nil {
		if _, err := os.Stat(os.Getenv("GOROOT") + "/bin/go"); err != nil {
			return nil, err
		}
	}
	_, full := goBuild(false)(f)
	b, err := os.ReadFile(full)
	if err != nil {
		f.Fatal(err)
	}
	ef, err := elf.NewFile(bytesReaderAt(b))
	if err != nil {
		f.Fatal(err)
	}
	tab, err := sectionData(ef, b, ".gopclntab")
	if err != nil || tab == nil {
		f.Fatalf("no pclntab: %v", err)
	}
	_, rt, _ := newSymtab(ef, b)
	pt, err := gopclntab.Find(ef, gopclntab.Bytes(b), rt)
	if err != nil || pt == nil {
		f.Fatalf("no pclntab: %v", err)
	}
	return &pclnSeed{tab: tab, gofunc: gopclntab.ReadVaddr(ef, gopclntab.Bytes(b), pt.Gofunc, 1<<16), text: pt.TextStart}, nil
}

func FuzzPerfMap(f *testing.F) {
	f.Add([]byte("7f0000001000 100 py::main:/app/x.py\n0x7f0000002000 0x40 jitted\n7f0000001000 100 py::again\n"), uint64(0x7f0000001010))
	f.Fuzz(func(t *testing.T, data []byte, addr uint64) {
		m, err := parsePerfMap(strings.NewReader(string(data)), "fuzz")
		if err != nil {
			return
		}
		m.lookup(addr)
		for _, s := range m.syms {
			if fr, ok := m.lookup(s.start); !ok || fr.Function == "" && s.name != "" {
				t.Fatalf("entry %+v does not resolve: %+v", s, fr)
			}
		}
	})
}

func FuzzKallsyms(f *testing.F) {
	if b, err := os.ReadFile("/proc/kallsyms"); err == nil {
		lines := strings.SplitAfterN(string(b), "\n", 200)
		f.Add([]byte(strings.Join(lines[:len(lines)-1], "")), uint64(0xffffffff81000010))
	}
	f.Add([]byte("ffffffff81000000 T _text\nffffffffc0000000 t helper\t[mod]\n"), uint64(0xffffffffc0000004))
	f.Fuzz(func(t *testing.T, data []byte, addr uint64) {
		addrs := []uint64{addr}
		if addr < math.MaxUint64 {
			addrs = append(addrs, addr+1)
		}
		frames, ok, spans, err := resolveKallsyms(strings.NewReader(string(data)), "fuzz", addrs)
		if err != nil {
			return
		}
		if len(frames) != len(addrs) || len(ok) != len(addrs) || len(spans) != len(addrs) {
			t.Fatalf("%d frames, %d spans for %d addresses", len(frames), len(spans), len(addrs))
		}
		for i, s := range spans {
			if s != (span{}) && (!ok[i] || s.start > addrs[i] || s.end <= addrs[i]) {
				t.Fatalf("%#x: span [%#x, %#x)", addrs[i], s.start, s.end)
			}
		}
	})
}

// FuzzKernelTable feeds table files (kernelcache.go) to their reader and
// looks addresses up: an error or an answer, never a panic, and an answer's
// span holds its address.
func FuzzKernelTable(f *testing.F) {
	in := "ffffffff81000000 T _stext\nffffffff81000100 T alpha\nffffffff81000100 t alpha2\nffffffff81000300 T _etext\n"
	b := newCoreTextBuild()
	if _, _, _, err := resolveKallsymsBuild(strings.NewReader(in), "seed", nil, b); err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	const boot = "00000000-0000-4000-8000-000000000004"
	if err := b.write(dir, boot); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(dir, boot))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed, uint64(0xffffffff81000180))
	f.Add(seed[:len(seed)-1], uint64(0xffffffff81000000))
	defer fuzzing()()
	f.Fuzz(func(t *testing.T, data []byte, addr uint64) {
		tab, err := parseKernelTable(data)
		if err != nil {
			return
		}
		for _, a := range []uint64{addr, tab.first.addr, tab.end - 1} {
			if fr, s, ok := tab.lookup(a); ok && (fr.File != pprof.KernelFile || s.end > s.start && (a < s.start || a >= s.end)) {
				t.Fatalf("%#x: %+v in [%#x, %#x)", a, fr, s.start, s.end)
			}
		}
		if _, err := tab.answer([]uint64{addr}, map[uint64]Frame{}, &kernelSpans{}); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzDemangle(f *testing.F) {
	for _, s := range []string{
		"_ZSt9__fill_a1IPiiEN9__gnu_cxx11__enable_ifIXsrSt11__is_scalarIT0_E7__valueEvE6__typeET_S8_RKS4_",
		"_ZN4core3fmt5write17h0123456789abcdefE",
		"_RINvCs32gj3y4fnmh_4main11sum_squaresdEB2_",
		"_ZN44_$LT$main..Square$u20$as$u20$main..Shape$GT$4area17hc0ace132bc7b52a4E.llvm.13689570134783661793",
		"_RNvXCs32gj3y4fnmh_4mainNtB2_6SquareNtB2_5Shape4area.llvm.17447152619116688077",
		"main.main",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		out := demangleName(name)
		if len(out) > 1<<17 && len(out) > 4*len(name) {
			t.Fatalf("demangled %d bytes into %d", len(name), len(out))
		}
	})
}

// FuzzCompressedSection feeds compression headers and streams (zlib and zstd
// seeds) to the section decompressor: an error, never a panic, and never more
// bytes than the header states.
func FuzzCompressedSection(f *testing.F) {
	want := []byte("DW_AT_name main.c DW_AT_comp_dir /src DW_AT_producer clang-19")
	for _, raw := range [][]byte{
		chdr64(elf.COMPRESS_ZLIB, uint64(len(want)), zlibStream(want)),
		chdr64(elf.COMPRESS_ZSTD, uint64(len(want)), zstdStream(want)),
	} {
		f.Add(raw, true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, class64 bool) {
		class := elf.ELFCLASS32
		if class64 {
			class = elf.ELFCLASS64
		}
		b, err := compressedSection(".debug_info", raw, class, binary.LittleEndian)
		if err == nil && uint64(len(b)) > maxCompressionRatio*uint64(len(raw)) {
			t.Fatalf("%d bytes from %d", len(b), len(raw))
		}
	})
}

func FuzzJITDump(f *testing.F) {
	f.Add(newJITDump(binary.LittleEndian, 1, jitdumpHeaderSize).sample(), uint64(0x7f0000001005))
	f.Add(newJITDump(binary.BigEndian, 1, jitdumpHeaderSize+8).sample(), uint64(0x7f0000002005))
	defer fuzzing()()
	f.Fuzz(func(t *testing.T, data []byte, addr uint64) {
		m, err := parseJITDump(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		m.lookup(addr)
		for _, s := range m.syms {
			if _, ok := m.lookup(s.start); !ok {
				t.Fatalf("entry %+v does not resolve", s)
			}
		}
	})
}
