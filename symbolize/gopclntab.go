package symbolize

import (
	"debug/elf"
	"errors"
	"fmt"

	"github.com/emberprof/ember/symbolize/gopclntab"
)

// goTable symbolizes Go code with its pclntab (Go 1.20 and later), read by
// package symbolize/gopclntab, which package unwind shares: function names,
// file:line, and the inline tree (FUNCDATA_InlTree indexed by
// PCDATA_InlTreeIndex), as the runtime does in runtime/symtab.go and
// runtime/symtabinl.go. The table is in the binary even when it is linked
// with -s -w.
type goTable struct {
	*gopclntab.Table
	read      func(addr, n uint64) []byte // the image at a virtual address
	wrapperID int                         // FuncIDWrapper; 0 until found, -1 if none
}

const (
	pcdataInlTreeIndex = 2
	funcdataInlTree    = 3
	inlinedCallSize    = 16
)

// newGoTable finds and checks the pclntab of a Go binary; (nil, nil) if ef
// is not one.
func newGoTable(ef *elf.File, data []byte, rt map[string]uint64) (*goTable, error) {
	img := gopclntab.Bytes(data)
	t, err := gopclntab.Find(ef, img, rt)
	if err != nil || t == nil {
		if errors.Is(err, gopclntab.ErrOldGo) || errors.Is(err, gopclntab.ErrFormat) {
			err = fmt.Errorf("%w: %w", ErrFormat, err)
		}
		return nil, err
	}
	return &goTable{Table: t, read: func(addr, n uint64) []byte { return gopclntab.ReadVaddr(ef, img, addr, n) }}, nil
}
