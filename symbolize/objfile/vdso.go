package objfile

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// VDSOPath is the name the kernel gives the vDSO's mapping in /proc/PID/maps.
const VDSOPath = "[vdso]"

// maxVDSO bounds the image read: the vDSO is two to four pages.
const maxVDSO = 1 << 20

// atSysinfoEHDR is AT_SYSINFO_EHDR (linux/auxvec.h): the vDSO's address.
const atSysinfoEHDR = 33

// ReadOwnVDSO returns the vDSO image mapped into Ember's own process, as
// many bytes as its mapping has. The kernel maps one image per ABI into
// every process (arch/x86/entry/vdso, vdso_image_64), so this is the ELF
// file, with its symbols and .eh_frame, of every native process's [vdso]
// mapping of the same size. It is read from memory, found by the auxiliary
// vector: no file on disk holds it (vdso64.so exists only where the kernel's
// build tree is installed).
//
// The mapping is the image rounded up to pages (arch/x86/entry/vdso/vdso2c.h
// and arch/arm64/kernel/vdso.c map the whole stripped .so, section headers
// last), so its size is the end of the ELF's furthest part, rounded up.
func ReadOwnVDSO() (b []byte, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("read own vDSO: %v", r)
		}
	}()
	auxv, err := unix.Auxv()
	if err != nil {
		return nil, fmt.Errorf("read own vDSO: %w", err)
	}
	var base uintptr
	for _, kv := range auxv {
		if kv[0] == atSysinfoEHDR {
			base = kv[1]
		}
	}
	if base == 0 {
		return nil, errors.New("read own vDSO: no AT_SYSINFO_EHDR in the auxiliary vector")
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		return nil, fmt.Errorf("read own vDSO: %w", err)
	}
	defer mem.Close()
	r := io.NewSectionReader(mem, int64(base), maxVDSO)
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("read own vDSO: %w", err)
	}
	size, err := imageSize(ef, r)
	if err != nil {
		return nil, fmt.Errorf("read own vDSO: %w", err)
	}
	b = make([]byte, size)
	if _, err := r.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("read own vDSO: %d bytes at %#x: %w", size, base, err)
	}
	return b, nil
}

// imageSize is the size of the ELF image ef, read from r, rounded up to
// pages: the end of its section header table or of its furthest segment or
// section in the file.
func imageSize(ef *elf.File, r io.ReaderAt) (int64, error) {
	var hdr [64]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return 0, err
	}
	bo := ef.ByteOrder
	var end uint64
	switch ef.Class {
	case elf.ELFCLASS64:
		end = bo.Uint64(hdr[0x28:]) + uint64(bo.Uint16(hdr[0x3a:]))*uint64(bo.Uint16(hdr[0x3c:]))
	case elf.ELFCLASS32:
		end = uint64(bo.Uint32(hdr[0x20:])) + uint64(bo.Uint16(hdr[0x2e:]))*uint64(bo.Uint16(hdr[0x30:]))
	default:
		return 0, fmt.Errorf("ELF class %v", ef.Class)
	}
	for _, p := range ef.Progs {
		end = max(end, p.Off+p.Filesz)
	}
	for _, s := range ef.Sections {
		if s.Type != elf.SHT_NOBITS {
			end = max(end, s.Offset+s.FileSize)
		}
	}
	page := uint64(os.Getpagesize())
	end = (end + page - 1) &^ (page - 1)
	if end == 0 || end > maxVDSO {
		return 0, fmt.Errorf("an image of %d bytes", end)
	}
	return int64(end), nil
}
