package objfile

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"syscall"
)

// maxNotes caps what is read of one note segment or section: a build ID note
// is 36 bytes, and a file's notes together a few hundred.
const maxNotes = 1 << 20

// Note types of the GNU and Go owners (elf.h; cmd/internal/buildid).
const (
	ntGNUBuildID = 3
	ntGoBuildID  = 4
)

// BuildIDs returns ef's GNU build ID in hex and the Go toolchain's build ID,
// "" for each it lacks. Notes are read from the PT_NOTE segments first (what
// the loader maps, so what a running process has), then from the
// .note.gnu.build-id and .note.go.buildid sections (debug files, objects
// without program headers). Malformed notes are skipped; it never panics on
// what debug/elf parsed.
func BuildIDs(ef *elf.File) (gnu, goid string) {
	for _, p := range ef.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(io.LimitReader(p.Open(), maxNotes))
		if err != nil {
			continue
		}
		forEachNote(notes, ef.ByteOrder, p.Align, func(name string, typ uint32, desc []byte) {
			switch {
			case name == "GNU\x00" && typ == ntGNUBuildID && gnu == "" && len(desc) > 0:
				gnu = hex.EncodeToString(desc)
			case name == "Go\x00\x00" && typ == ntGoBuildID && goid == "":
				goid = string(bytes.TrimRight(desc, "\x00"))
			}
		})
	}
	if gnu == "" {
		if b := noteSection(ef, ".note.gnu.build-id"); b != nil {
			forEachNote(b, ef.ByteOrder, ef.Section(".note.gnu.build-id").Addralign, func(name string, typ uint32, desc []byte) {
				if name == "GNU\x00" && typ == ntGNUBuildID && gnu == "" && len(desc) > 0 {
					gnu = hex.EncodeToString(desc)
				}
			})
		}
	}
	if goid == "" {
		if b := noteSection(ef, ".note.go.buildid"); b != nil {
			forEachNote(b, ef.ByteOrder, 4, func(name string, typ uint32, desc []byte) {
				if typ == ntGoBuildID && goid == "" {
					goid = string(bytes.TrimRight(desc, "\x00"))
				}
			})
		}
	}
	return gnu, goid
}

// noteSection returns the contents of the named note section, or nil.
func noteSection(ef *elf.File, name string) []byte {
	s := ef.Section(name)
	if s == nil || s.Type != elf.SHT_NOTE || s.Size > maxNotes {
		return nil
	}
	b, err := s.Data()
	if err != nil {
		return nil
	}
	return b
}

// forEachNote walks ELF notes (namesz, descsz, type, name, desc; each padded
// to 4 bytes, or 8 in segments aligned to 8), stopping at the first that
// does not fit.
func forEachNote(b []byte, bo binary.ByteOrder, align uint64, fn func(name string, typ uint32, desc []byte)) {
	pad := uint64(4)
	if align == 8 {
		pad = 8
	}
	up := func(n uint64) uint64 { return (n + pad - 1) &^ (pad - 1) }
	for len(b) >= 12 {
		namesz, descsz, typ := uint64(bo.Uint32(b)), uint64(bo.Uint32(b[4:])), bo.Uint32(b[8:])
		b = b[12:]
		if namesz > uint64(len(b)) || up(namesz) > uint64(len(b)) {
			return
		}
		name := string(b[:namesz])
		b = b[up(namesz):]
		if descsz > uint64(len(b)) {
			return
		}
		desc := b[:descsz]
		fn(name, typ, desc)
		if up(descsz) > uint64(len(b)) {
			return
		}
		b = b[up(descsz):]
	}
}

// Key is the cache key of a binary: its GNU build ID (BuildIDKey), else the
// identity of the file it was read from (FileKey). Every cache of what is
// built from a binary (symbol tables, unwind tables) is keyed by it.
func Key(gnuBuildID string, st os.FileInfo) string {
	if gnuBuildID != "" {
		return BuildIDKey(gnuBuildID)
	}
	return FileKey(st)
}

// BuildIDKey is the key of a binary with GNU build ID id (hex).
func BuildIDKey(id string) string { return "build:" + id }

// FileKey is the key of a file without a build ID: its device, inode, size
// and modification time, so that a file rewritten in place gets a new key.
func FileKey(st os.FileInfo) string {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("file:%d:%d:%d:%d", s.Dev, s.Ino, st.Size(), st.ModTime().UnixNano())
	}
	return fmt.Sprintf("file:%s:%d:%d", st.Name(), st.Size(), st.ModTime().UnixNano())
}
