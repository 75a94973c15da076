package symbolize

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// Compressed debug sections are decompressed whole when a file is first
// indexed: a zlib or zstd stream cannot be entered in the middle, and the
// unit index needs every unit header of .debug_info. That is most of the cost
// of opening a file whose debug info is packaged compressed (Debian's and
// Fedora's debug packages are): glibc's 5.8 MB .debug_info took 48 ms with
// compress/zlib and takes 31 ms here; compressed with zstd, 29 ms with
// debug/elf's decoder against 13 ms here (klauspost/compress, which reads the
// same formats faster).

// compressedSection decompresses an SHF_COMPRESSED section, whose bytes are
// raw (an Elf32_Chdr or Elf64_Chdr, then the stream), into a buffer of the
// size its header states, and fails if the stream gives more or fewer bytes.
func compressedSection(name string, raw []byte, class elf.Class, bo binary.ByteOrder) ([]byte, error) {
	return compressedSectionInto(name, raw, class, bo, heapBuffer)
}

// heapBuffer is a decompressed section's buffer on the Go heap.
func heapBuffer(n int) []byte { return make([]byte, n) }

// compressedSectionInto is compressedSection decompressing into the buffer
// buf returns for the stated size (the heap, or a spill file's mapping).
func compressedSectionInto(name string, raw []byte, class elf.Class, bo binary.ByteOrder, buf func(int) []byte) ([]byte, error) {
	var typ elf.CompressionType
	var size uint64
	var hdr int
	switch class {
	case elf.ELFCLASS64:
		hdr = 24 // ch_type, ch_reserved, ch_size, ch_addralign
		if len(raw) >= hdr {
			typ, size = elf.CompressionType(bo.Uint32(raw)), bo.Uint64(raw[8:])
		}
	default:
		hdr = 12 // ch_type, ch_size, ch_addralign
		if len(raw) >= hdr {
			typ, size = elf.CompressionType(bo.Uint32(raw)), uint64(bo.Uint32(raw[4:]))
		}
	}
	if len(raw) < hdr {
		return nil, fmt.Errorf("section %s: %d bytes, shorter than its compression header: %w", name, len(raw), ErrFormat)
	}
	return decompress(name, typ, raw[hdr:], size, buf)
}

// decompress inflates stream, of the given type, into exactly size bytes,
// in the buffer buf returns for size (checked against maxSectionSize first):
// decompressed straight into a spill file's mapping, a section is never on
// the Go heap as well.
func decompress(name string, typ elf.CompressionType, stream []byte, size uint64, buf func(int) []byte) ([]byte, error) {
	decompressions.Add(1)
	if size > maxSectionSize || size/maxCompressionRatio > uint64(len(stream)) {
		return nil, fmt.Errorf("section %s of %d bytes, %d compressed: %w", name, size, len(stream), ErrTooLarge)
	}
	switch typ {
	case elf.COMPRESS_ZLIB:
		zr, err := zlib.NewReader(bytes.NewReader(stream))
		if err != nil {
			return nil, fmt.Errorf("section %s: %w: %w", name, ErrFormat, err)
		}
		defer zr.Close()
		// Read into a buffer of the stated size: io.ReadAll would grow
		// one in steps, allocating a few times a section that is often
		// megabytes.
		b := buf(int(size))
		if n, err := io.ReadFull(zr, b); err != nil {
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				return nil, fmt.Errorf("section %s: decompressed to %d bytes, header says %d: %w", name, n, size, ErrFormat)
			}
			return nil, fmt.Errorf("section %s: %w: %w", name, ErrFormat, err)
		}
		if n, _ := zr.Read(make([]byte, 1)); n != 0 {
			return nil, fmt.Errorf("section %s: decompresses to more than the %d bytes its header says: %w", name, size, ErrFormat)
		}
		return b, nil
	case elf.COMPRESS_ZSTD:
		dec, err := zstdDecoder()
		if err != nil {
			return nil, fmt.Errorf("section %s: %w", name, err)
		}
		// DecodeAll fills a buffer of the stated size in place and,
		// with the decoder's cap limit, refuses a stream that gives more.
		b, err := dec.DecodeAll(stream, buf(int(size))[:0])
		if err != nil {
			return nil, fmt.Errorf("section %s: %w: %w", name, ErrFormat, err)
		}
		if uint64(len(b)) != size {
			return nil, fmt.Errorf("section %s: decompressed to %d bytes, header says %d: %w", name, len(b), size, ErrFormat)
		}
		return b, nil
	}
	return nil, fmt.Errorf("section %s: unknown compression type %d: %w", name, typ, ErrFormat)
}

// decompressions counts the sections decompressed, for the tests of the
// section directory (sectioncache.go).
var decompressions atomic.Int64

// zstdDecoder is shared: a decoder holds window buffers worth reusing, and
// DecodeAll may be called from several goroutines. One at a time is enough
// for a symbolizer; its memory is bounded like a section's.
var zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxSectionSize),
		zstd.WithDecodeAllCapLimit(true))
})
