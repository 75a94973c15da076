package unwind

import (
	"debug/elf"
	"fmt"
)

// maxPageSize is the largest page size a segment's offset is rounded down by
// when it is mapped (64 KiB pages on some arm64 kernels).
const maxPageSize = 64 << 10

// Bias returns the load bias of an executable file mapping: the runtime
// address minus the ELF virtual address, for a mapping of f that starts at
// runtime address start and file offset offset (the fields of a
// /proc/PID/maps line). Executable segments are preferred, since a page can
// hold the end of one segment and the start of another.
func Bias(f *elf.File, start, offset uint64) (uint64, error) {
	for _, wantExec := range []bool{true, false} {
		var seg *elf.Prog
		for _, p := range f.Progs {
			if p.Type != elf.PT_LOAD || (p.Flags&elf.PF_X != 0) != wantExec {
				continue
			}
			if offset >= p.Off && offset < p.Off+p.Filesz {
				seg = p // a mapping inside the segment (split by mprotect)
				break
			}
			if seg == nil && offset < p.Off && p.Off-offset < maxPageSize {
				seg = p // the segment's offset rounded down to a page
			}
		}
		if seg != nil {
			// The mapping's first byte has virtual address Vaddr + (offset - Off).
			return start - (seg.Vaddr + offset - seg.Off), nil
		}
	}
	return 0, fmt.Errorf("unwind: no PT_LOAD segment maps file offset %#x", offset)
}
