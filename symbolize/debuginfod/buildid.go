package debuginfod

import (
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// ErrInvalid is wrapped by the errors of answers that are not what was asked
// for: not ELF, or ELF with another build ID (or none).
var ErrInvalid = errors.New("debuginfod: invalid answer")

// maxNoteBytes caps what is read of one note section or segment: a build ID
// note is 36 bytes, and a file's notes together a few hundred.
const maxNoteBytes = 1 << 16

// ntGNUBuildID is NT_GNU_BUILD_ID (elf.h), which debug/elf does not name.
const ntGNUBuildID = 3

// ValidBuildID reports whether id can be a GNU build ID as the protocol
// spells it (lower-case hex, an even number of digits, 2 to 128), which also
// makes it safe as a directory name.
func ValidBuildID(id string) bool {
	if len(id) < 2 || len(id) > 128 || len(id)%2 != 0 {
		return false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// BuildID returns the GNU build ID of the ELF file r, from its note sections,
// else its note segments. An answer from a server is checked with it: a
// truncated or foreign file has no build ID, or another one. It never panics:
// debug/elf can on malformed input, and r comes from the network.
func BuildID(r io.ReaderAt) (id string, err error) {
	defer func() {
		if p := recover(); p != nil {
			id, err = "", fmt.Errorf("%w: malformed ELF: %v", ErrInvalid, p)
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOTE || s.Size > maxNoteBytes {
			continue
		}
		b, err := s.Data()
		if err != nil {
			continue
		}
		if id, ok := gnuBuildID(b, f.ByteOrder); ok {
			return id, nil
		}
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE || p.Filesz > maxNoteBytes {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			continue
		}
		if id, ok := gnuBuildID(b, f.ByteOrder); ok {
			return id, nil
		}
	}
	return "", fmt.Errorf("%w: no GNU build ID note", ErrInvalid)
}

// gnuBuildID finds the NT_GNU_BUILD_ID note, owner "GNU", in a run of ELF
// notes (namesz, descsz, type, then name and desc each padded to 4 bytes).
func gnuBuildID(b []byte, bo binary.ByteOrder) (string, bool) {
	for len(b) >= 12 {
		namesz, descsz, typ := uint64(bo.Uint32(b)), uint64(bo.Uint32(b[4:])), bo.Uint32(b[8:])
		b = b[12:]
		nameEnd := (namesz + 3) &^ 3
		descEnd := nameEnd + (descsz+3)&^3
		if nameEnd > uint64(len(b)) || descEnd > uint64(len(b)) || descsz > uint64(len(b)) {
			return "", false
		}
		if typ == ntGNUBuildID && namesz == 4 && string(b[:4]) == "GNU\x00" && descsz > 0 {
			return hex.EncodeToString(b[nameEnd : nameEnd+descsz]), true
		}
		b = b[descEnd:]
	}
	return "", false
}
