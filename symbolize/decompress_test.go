package symbolize

import (
	"bytes"
	"compress/zlib"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// chdr64 returns an Elf64_Chdr followed by stream.
func chdr64(typ elf.CompressionType, size uint64, stream []byte) []byte {
	b := make([]byte, 24, 24+len(stream))
	binary.LittleEndian.PutUint32(b, uint32(typ))
	binary.LittleEndian.PutUint64(b[8:], size)
	binary.LittleEndian.PutUint64(b[16:], 1)
	return append(b, stream...)
}

func zlibStream(b []byte) []byte {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func zstdStream(b []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		panic(err) // only for bad options
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

func TestCompressedSection(t *testing.T) {
	// Compressible, but not beyond the ratio real sections have.
	want := make([]byte, 100000)
	const words = "DW_TAG_subprogram main.c 42\n"
	x := uint32(1)
	for i := range want {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		want[i] = words[x%uint32(len(words))]
	}
	streams := map[elf.CompressionType][]byte{
		elf.COMPRESS_ZLIB: zlibStream(want),
		elf.COMPRESS_ZSTD: zstdStream(want),
	}
	for typ, stream := range streams {
		got, err := compressedSection(".debug_info", chdr64(typ, uint64(len(want)), stream), elf.ELFCLASS64, binary.LittleEndian)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%v: %d bytes, %v; want %d bytes", typ, len(got), err, len(want))
		}
		// Into the caller's buffer (a spill file's mapping), with no copy
		// on the heap.
		dst := make([]byte, len(want))
		got, err = compressedSectionInto(".debug_info", chdr64(typ, uint64(len(want)), stream), elf.ELFCLASS64, binary.LittleEndian,
			func(n int) []byte { return dst[:n] })
		if err != nil || !bytes.Equal(got, want) || &got[0] != &dst[0] {
			t.Errorf("%v into a buffer: %d bytes, %v, in the buffer %v", typ, len(got), err, len(got) > 0 && &got[0] == &dst[0])
		}
		// The header's size must be what the stream gives, either way.
		for _, size := range []uint64{uint64(len(want)) - 1, uint64(len(want)) + 1} {
			_, err := compressedSection(".debug_info", chdr64(typ, size, stream), elf.ELFCLASS64, binary.LittleEndian)
			if !errors.Is(err, ErrFormat) {
				t.Errorf("%v with header size %d for a %d-byte stream: %v, want ErrFormat", typ, size, len(want), err)
			}
		}
		// A truncated stream.
		_, err = compressedSection(".debug_info", chdr64(typ, uint64(len(want)), stream[:len(stream)/2]), elf.ELFCLASS64, binary.LittleEndian)
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%v truncated: %v, want ErrFormat", typ, err)
		}
	}

	// Elf32_Chdr: type, size, alignment, 4 bytes each.
	hdr := make([]byte, 12)
	binary.BigEndian.PutUint32(hdr, uint32(elf.COMPRESS_ZLIB))
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(want)))
	if got, err := compressedSection(".debug_line", append(hdr, streams[elf.COMPRESS_ZLIB]...), elf.ELFCLASS32, binary.BigEndian); err != nil || !bytes.Equal(got, want) {
		t.Errorf("ELFCLASS32: %d bytes, %v", len(got), err)
	}

	for _, c := range []struct {
		name string
		raw  []byte
		want error
	}{
		{"short header", make([]byte, 23), ErrFormat},
		{"unknown type", chdr64(7, 100, streams[elf.COMPRESS_ZLIB]), ErrFormat},
		{"ratio beyond any real section", chdr64(elf.COMPRESS_ZLIB, 1<<29, make([]byte, 100)), ErrTooLarge},
		{"beyond the section cap", chdr64(elf.COMPRESS_ZSTD, maxSectionSize+1, make([]byte, 1<<24)), ErrTooLarge},
		{"garbage stream", chdr64(elf.COMPRESS_ZSTD, 1000, bytes.Repeat([]byte{0xa5}, 100)), ErrFormat},
	} {
		if _, err := compressedSection(".debug_info", c.raw, elf.ELFCLASS64, binary.LittleEndian); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// TestSectionDataMatchesObjcopy decompresses every debug section of a real
// binary compressed by objcopy (zlib, zstd, and the old .zdebug form) and
// compares it with the same section left uncompressed.
func TestSectionDataMatchesObjcopy(t *testing.T) {
	objcopy := requireTool(t, "objcopy")
	plain, _ := zstdBuild(t)
	dir := t.TempDir()
	plainCopy := filepath.Join(dir, "plain")
	if out, err := exec.Command(objcopy, "--decompress-debug-sections", plain, plainCopy).CombinedOutput(); err != nil {
		t.Fatalf("objcopy --decompress-debug-sections: %v: %s", err, out)
	}
	wantEF, wantData := openELF(t, plainCopy)
	for _, form := range []string{"zlib", "zstd", "zlib-gnu"} {
		out := filepath.Join(dir, form)
		if b, err := exec.Command(objcopy, "--compress-debug-sections="+form, plainCopy, out).CombinedOutput(); err != nil {
			t.Fatalf("objcopy --compress-debug-sections=%s: %v: %s", form, err, b)
		}
		ef, data := openELF(t, out)
		compressed := 0
		for _, s := range wantEF.Sections {
			if !strings.HasPrefix(s.Name, ".debug_") || s.Type == elf.SHT_NOBITS {
				continue
			}
			want, err := sectionData(wantEF, wantData, s.Name)
			if err != nil {
				t.Fatal(err)
			}
			got, err := sectionData(ef, data, s.Name)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %s: %d bytes, %v; want the %d uncompressed bytes", form, s.Name, len(got), err, len(want))
			}
			if cs := ef.Section(s.Name); cs == nil || cs.Flags&elf.SHF_COMPRESSED != 0 {
				compressed++ // .zdebug_ (nil) or SHF_COMPRESSED
			}
		}
		if compressed == 0 {
			t.Errorf("%s: objcopy compressed no section", form)
		}
	}
}

func openELF(t testing.TB, path string) (*elf.File, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return ef, data
}

// BenchmarkDecompress decompresses the .debug_info of the largest DWARF
// binary found (as BenchmarkVsLLVM), compressed by objcopy with zlib and with
// zstd, with Ember's decoder and with debug/elf's own (Section.Open, the
// baseline), and reports the ratio. Run with:
//
//	go test ./symbolize -run '^$' -bench BenchmarkDecompress -v
func BenchmarkDecompress(b *testing.B) {
	objcopy := requireTool(b, "objcopy")
	bin, _ := largestDWARF(b)
	for _, form := range []string{"zlib", "zstd"} {
		out := filepath.Join(b.TempDir(), form)
		if msg, err := exec.Command(objcopy, "--compress-debug-sections="+form, bin, out).CombinedOutput(); err != nil {
			b.Fatalf("objcopy: %v: %s", err, msg)
		}
		ef, data := openELF(b, out)
		s := ef.Section(".debug_info")
		if s == nil || s.Flags&elf.SHF_COMPRESSED == 0 {
			b.Fatalf("%s: no compressed .debug_info", out)
		}
		var ns [2]float64
		b.Run(form+"/ember", func(b *testing.B) {
			b.SetBytes(int64(s.Size))
			for b.Loop() {
				if _, err := sectionData(ef, data, ".debug_info"); err != nil {
					b.Fatal(err)
				}
			}
			ns[0] = float64(b.Elapsed()) / float64(b.N)
		})
		b.Run(form+"/debug-elf", func(b *testing.B) {
			b.SetBytes(int64(s.Size))
			for b.Loop() {
				buf := make([]byte, s.Size)
				if _, err := io.ReadFull(s.Open(), buf); err != nil {
					b.Fatal(err)
				}
			}
			ns[1] = float64(b.Elapsed()) / float64(b.N)
		})
		b.Logf("%s: .debug_info of %s, %d bytes (%d compressed): ember %.1f ms, debug/elf %.1f ms, ratio %.3f",
			form, bin, s.Size, s.FileSize, ns[0]/1e6, ns[1]/1e6, ns[0]/ns[1])
	}
}
