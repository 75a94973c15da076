package symbolize

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// A jitdump file (/tmp/jit-PID.dump) is the binary form of perf's JIT
// interface (tools/perf/Documentation/jitdump-specification.txt): a header,
// then records, each with its size, so that a reader can skip what it does
// not know. CPython's -X perf_jit (3.13) and node --perf-prof write one and
// map its first page executable, which is how perf, and Ember, find it in
// the process's mappings. It names the same code a perf map does, in the
// same words (CPython: "py::FUNCTION:FILE" in both), so it is read into a
// perfMap: the symbolizer has one lookup for JIT names from either file.
//
// The runtime writes the file through stdio while it runs (CPython: in
// 4 KiB blocks, the last records reach the file at exit), so the file read
// may end inside a record: a record cut short by the end of the file costs
// only itself, and a header not written yet is an empty file.

const (
	jitdumpMagic      = 0x4A695444 // "JiTD" in the writer's byte order
	jitdumpHeaderSize = 40         // magic .. flags, version 1
	jitPrefixSize     = 16         // id, total_size, timestamp
	jitLoadFixed      = 40         // pid, tid, vma, code_addr, code_size, code_index
	jitMoveFixed      = 48         // pid, tid, vma, old_code_addr, new_code_addr, code_size, code_index
	maxJITRecordBytes = 64 << 20   // no JIT function is 64 MiB of code
)

// jitdump record ids.
const (
	jitCodeLoad  = 0
	jitCodeMove  = 1
	jitCodeClose = 3
)

// errJITTruncated is the end of the file inside a record: the writer has
// not written the rest yet.
var errJITTruncated = errors.New("truncated")

// isJITDump reports whether data begins with a jitdump header's magic, in
// either byte order.
func isJITDump(data []byte) bool {
	return len(data) >= 4 && (binary.LittleEndian.Uint32(data) == jitdumpMagic || binary.BigEndian.Uint32(data) == jitdumpMagic)
}

// parseJITDump reads the code loads and moves of a jitdump file into a
// perfMap. The file is hostile: record and name sizes are bounded, a
// malformed record (smaller than its fixed fields, a name without its
// terminating NUL) is an error naming its offset, and no panic escapes.
func parseJITDump(r io.Reader, name string) (m *perfMap, err error) {
	defer guard(name, &err)
	jr := &jitReader{r: bufio.NewReaderSize(r, 64<<10)}
	var syms []perfSym
	if err := jr.header(); err != nil {
		if errors.Is(err, errJITTruncated) {
			return newPerfMap(nil), nil
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	byIndex := map[uint64]string{} // code_index -> name, for moves
	for n := 0; ; n++ {
		if n >= maxPerfMapLines {
			return nil, fmt.Errorf("%s: more than %d records: %w", name, maxPerfMapLines, ErrTooLarge)
		}
		s, id, index, err := jr.record(byIndex)
		switch {
		case errors.Is(err, errJITTruncated) || errors.Is(err, io.EOF):
			return newPerfMap(syms), nil
		case err != nil:
			return nil, fmt.Errorf("%s: %w", name, err)
		case id == jitCodeClose:
			return newPerfMap(syms), nil
		case id == jitCodeLoad:
			byIndex[index] = s.name
			syms = append(syms, s)
		case id == jitCodeMove && s.name != "":
			// A move of code whose load was not read names nothing.
			syms = append(syms, s)
		}
	}
}

// jitReader reads a jitdump file's fields in the byte order its header's
// magic gives, keeping its offset for errors.
type jitReader struct {
	r   *bufio.Reader
	bo  binary.ByteOrder
	off int64
	buf [jitMoveFixed]byte
}

// read fills b; the end of the file anywhere in it is errJITTruncated.
func (jr *jitReader) read(b []byte) error {
	n, err := io.ReadFull(jr.r, b)
	jr.off += int64(n)
	if err == io.EOF && n == 0 && len(b) > 0 {
		return io.EOF
	}
	if err != nil {
		return errJITTruncated
	}
	return nil
}

// skip passes n bytes.
func (jr *jitReader) skip(n int64) error {
	for n > 0 {
		k, err := jr.r.Discard(int(min(n, 1<<30)))
		jr.off += int64(k)
		n -= int64(k)
		if err != nil {
			return errJITTruncated
		}
	}
	return nil
}

func (jr *jitReader) header() error {
	h := jr.buf[:12]
	if err := jr.read(h); err != nil {
		return errJITTruncated // nothing, or part of a header, written yet
	}
	switch {
	case binary.LittleEndian.Uint32(h) == jitdumpMagic:
		jr.bo = binary.LittleEndian
	case binary.BigEndian.Uint32(h) == jitdumpMagic:
		jr.bo = binary.BigEndian
	default:
		return fmt.Errorf("not a jitdump file (magic %#x): %w", binary.LittleEndian.Uint32(h), ErrFormat)
	}
	if v := jr.bo.Uint32(h[4:]); v != 1 {
		return fmt.Errorf("jitdump version %d, want 1: %w", v, ErrFormat)
	}
	size := int64(jr.bo.Uint32(h[8:]))
	if size < jitdumpHeaderSize || size > 1<<20 {
		return fmt.Errorf("jitdump header of %d bytes: %w", size, ErrFormat)
	}
	return jr.skip(size - 12) // elf_mach, pid, timestamp, flags, and any later fields
}

// record reads one record: its id, and for a code load or move the symbol
// it gives with its code index (the name of a move from byIndex).
func (jr *jitReader) record(byIndex map[uint64]string) (s perfSym, id uint32, index uint64, err error) {
	at := jr.off
	p := jr.buf[:jitPrefixSize]
	if err := jr.read(p); err != nil {
		return s, 0, 0, err
	}
	id, size := jr.bo.Uint32(p), int64(jr.bo.Uint32(p[4:]))
	if size < jitPrefixSize || size > maxJITRecordBytes {
		return s, id, 0, fmt.Errorf("record %d at %#x: size %d: %w", id, at, size, ErrFormat)
	}
	body := size - jitPrefixSize
	switch id {
	case jitCodeLoad:
		if body < jitLoadFixed+1 {
			return s, id, 0, fmt.Errorf("code load at %#x: %d bytes: %w", at, size, ErrFormat)
		}
		f := jr.buf[:jitLoadFixed]
		if err := jr.read(f); err != nil {
			return s, id, 0, err
		}
		s.start, s.size, index = jr.bo.Uint64(f[16:]), jr.bo.Uint64(f[24:]), jr.bo.Uint64(f[32:])
		var n int64
		if s.name, n, err = jr.name(body-jitLoadFixed, at); err != nil {
			return s, id, 0, err
		}
		body -= jitLoadFixed + n
	case jitCodeMove:
		if body < jitMoveFixed {
			return s, id, 0, fmt.Errorf("code move at %#x: %d bytes: %w", at, size, ErrFormat)
		}
		f := jr.buf[:jitMoveFixed]
		if err := jr.read(f); err != nil {
			return s, id, 0, err
		}
		s.start, s.size, index = jr.bo.Uint64(f[24:]), jr.bo.Uint64(f[32:]), jr.bo.Uint64(f[40:])
		s.name = byIndex[index]
		body -= jitMoveFixed
	case jitCodeClose:
		return s, id, 0, nil
	}
	if s.start+s.size < s.start {
		return perfSym{}, id, 0, fmt.Errorf("record %d at %#x: code at %#x+%#x wraps: %w", id, at, s.start, s.size, ErrFormat)
	}
	// The code bytes of a load; debug and unwinding information; records
	// of later versions of the format.
	return s, id, index, jr.skip(body)
}

// name reads a NUL-terminated name within the limit bytes left of the
// record at offset at, keeping its first maxNameLen bytes. It returns the
// bytes it read, NUL included.
func (jr *jitReader) name(limit, at int64) (string, int64, error) {
	var b strings.Builder
	var n int64
	for n < limit {
		chunk, err := jr.r.Peek(int(min(limit-n, int64(jr.r.Size()))))
		if len(chunk) == 0 && err != nil {
			return "", n, errJITTruncated
		}
		i := bytes.IndexByte(chunk, 0)
		text := chunk
		if i >= 0 {
			text = chunk[:i]
		}
		b.Write(text[:min(len(text), maxNameLen-b.Len())])
		if i >= 0 {
			chunk = chunk[:i+1]
		}
		jr.r.Discard(len(chunk))
		jr.off += int64(len(chunk))
		n += int64(len(chunk))
		if i >= 0 {
			return b.String(), n, nil
		}
	}
	return "", n, fmt.Errorf("code load at %#x: name without its NUL: %w", at, ErrFormat)
}
