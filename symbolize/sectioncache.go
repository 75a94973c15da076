package symbolize

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/export/cachedir"
)

// Decompressed debug sections on disk, by build ID, between runs. A
// process's separate debug file is most often packaged compressed (glibc's
// on Debian: 3.6 MB of zlib for 9 MB of .debug_info, .debug_abbrev and
// .debug_line), and every recording that meets a libc frame decompressed it
// again: 60-80 ms of CPU, a tenth of a 10 s whole-system recording. Kept in
// a directory of the caller's (SetSectionCacheDir; Ember's cache directory),
// a section decompressed once is mapped read-only by the next run, as the
// spill file it replaces is (spill.go): clean file pages, read in as lookups
// need them. A file is named by the debug file's GNU build ID and the
// section's name, written under a temporary name and renamed once whole, and
// used only when it is this user's own, no one else may write it, and its
// size is the size the section's header states. Files without a build ID
// are not kept; the directory is trimmed, oldest first, to
// maxSectionDirBytes.

// maxSectionDirBytes bounds the section directory (glibc's sections are
// 9 MB; a machine's few packaged debug files fit many times over).
const maxSectionDirBytes = 256 << 20

// cacheDir is a directory a caller names once (SetSectionCacheDir,
// SetKernelCacheDir) and a cache's readers look up on each use; "" keeps
// no cache.
type cacheDir struct{ p atomic.Pointer[string] }

func (c *cacheDir) set(dir string) { c.p.Store(&dir) }

func (c *cacheDir) get() string {
	if p := c.p.Load(); p != nil {
		return *p
	}
	return ""
}

var sectionCache cacheDir

// SetSectionCacheDir keeps decompressed debug sections in dir between runs
// ("" keeps none, the default). The directory is made (0700) when first
// written.
func SetSectionCacheDir(dir string) { sectionCache.set(dir) }

// cachedSectionInto is sectionDataInto for the debug file ef with GNU build
// ID id: an SHF_COMPRESSED section is read from the section directory when a
// run before this one decompressed it, else decompressed into a new file
// there for the next run; its mapping is added to *spilled, as a spill
// buffer's is. Everything else (no directory, no build ID, a section not
// compressed, or .zdebug) is sectionDataInto's.
func cachedSectionInto(ef *elf.File, data []byte, id, name string, spilled *[][]byte, into func(int) []byte) ([]byte, error) {
	dir := sectionCache.get()
	s := ef.Section(name)
	if dir == "" || id == "" || strings.ContainsAny(id, "/.") || s == nil || s.Type == elf.SHT_NOBITS ||
		s.Flags&elf.SHF_COMPRESSED == 0 {
		return sectionDataInto(ef, data, name, into)
	}
	raw, err := fileBytes(s, data)
	if err != nil {
		return nil, err
	}
	size, ok := statedSize(raw, ef.Class, ef.ByteOrder)
	if !ok || size == 0 || size > maxSectionSize {
		return sectionDataInto(ef, data, name, into) // its errors
	}
	path := filepath.Join(dir, id+name)
	if m, err := mapSectionFile(path, int(size)); err == nil {
		*spilled = append(*spilled, m)
		return m, nil
	}
	m, tmp, ok := newSectionFile(dir, int(size))
	if !ok {
		return sectionDataInto(ef, data, name, into)
	}
	b, err := compressedSectionInto(name, raw, ef.Class, ef.ByteOrder, func(int) []byte { return m })
	if err != nil {
		unmap(m)
		os.Remove(tmp)
		return nil, err
	}
	*spilled = append(*spilled, m)
	// On disk before it is named, as export/atomicfile syncs before its
	// rename: after a crash a file of the stated size but unwritten pages
	// would pass mapSectionFile's checks and read as zeros.
	if unix.Msync(m, unix.MS_SYNC) != nil || os.Rename(tmp, path) != nil {
		os.Remove(tmp)
	}
	return b, nil
}

// statedSize is the decompressed size an Elf32_Chdr or Elf64_Chdr states.
func statedSize(raw []byte, class elf.Class, bo binary.ByteOrder) (uint64, bool) {
	if class == elf.ELFCLASS64 {
		if len(raw) < 24 {
			return 0, false
		}
		return bo.Uint64(raw[8:]), true
	}
	if len(raw) < 12 {
		return 0, false
	}
	return uint64(bo.Uint32(raw[4:])), true
}

// errUntrusted is a section file another user could have written.
var errUntrusted = errors.New("not this user's own, or writable by others")

// mapSectionFile maps the section file at path read-only, if it is this
// user's, no one else may write it, and it holds exactly size bytes.
func mapSectionFile(path string, size int) ([]byte, error) {
	return mapCacheFile(path, func(n int64) error {
		if n != int64(size) {
			return fmt.Errorf("%s: %d bytes, the section's header says %d: %w", path, n, size, ErrFormat)
		}
		return nil
	})
}

// mapCacheFile maps a file of one of the symbolizer's cache directories
// read-only (the section directory, the kernel's: kernelcache.go), if it is a
// regular file of this user's that no one else may write, and sizeOK accepts
// its size (a non-empty one: a mapping of zero bytes fails).
func mapCacheFile(path string, sizeOK func(int64) error) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Uid != uint32(os.Geteuid()) || st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("%s: %w", path, errUntrusted)
	}
	if err := sizeOK(st.Size); err != nil {
		return nil, err
	}
	if st.Size <= 0 || st.Size > math.MaxInt {
		return nil, fmt.Errorf("%s: %d bytes: %w", path, st.Size, ErrFormat)
	}
	return syscall.Mmap(fd, 0, int(st.Size), syscall.PROT_READ, syscall.MAP_SHARED)
}

// newSectionFile makes room in dir and returns size writable bytes mapped
// from a new file there, under a temporary name that the caller renames once
// the section is whole. Its blocks are allocated first (fallocate), as a
// spill buffer's are.
func newSectionFile(dir string, size int) ([]byte, string, bool) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", false
	}
	cachedir.Trim(dir, maxSectionDirBytes-int64(size), nil, "")
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return nil, "", false
	}
	defer f.Close()
	m, err := func() ([]byte, error) {
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil {
			return nil, err
		}
		return syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	}()
	if err != nil {
		os.Remove(f.Name())
		return nil, "", false
	}
	return m, f.Name(), true
}
