package gopclntab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// Errors. Both are wrapped with the detail.
var (
	// ErrFormat: the table is malformed.
	ErrFormat = errors.New("gopclntab: bad format")
	// ErrOldGo: the binary was built by Go before 1.20, whose table layout
	// this package does not read.
	ErrOldGo = errors.New("gopclntab: Go before 1.20")
)

// Magic numbers of pcHeader (runtime/symtab.go).
const (
	Go120Magic = 0xfffffff1
	go118Magic = 0xfffffff0
	go116Magic = 0xfffffffa
	go12Magic  = 0xfffffffb
)

// Caps for hostile input.
const (
	// maxPCValueSteps bounds the entries decoded from one pc-value table.
	maxPCValueSteps = 1 << 20
	// MaxNameLen bounds a function name.
	MaxNameLen = 1 << 16
	// FuncHeaderSize is the size of the fixed part of runtime._func.
	FuncHeaderSize = 44
)

// Func flags (internal/abi.FuncFlag).
const (
	FlagTopFrame = 1 << 0 // the outermost frame of a goroutine or thread
	FlagSPWrite  = 1 << 1 // writes SP other than by constant adjustments
	FlagASM      = 1 << 2 // written in assembly
)

// Table is a parsed pclntab. TextStart and Gofunc come from the module data
// (see Find); Parse leaves them zero.
type Table struct {
	ByteOrder binary.ByteOrder
	PtrSize   int
	Quantum   uint64 // instruction size quantum: 1 on amd64, 4 on arm64
	NFunc     int
	TextStart uint64 // runtime.text: entry offsets are relative to it
	Gofunc    uint64 // go:func.*: base of funcdata offsets; 0 if unknown

	funcnames []byte
	cutab     []byte
	filetab   []byte
	pctab     []byte
	pcln      []byte // functab followed by the _func structs
}

// Parse checks the header of a pclntab and slices out its tables.
func Parse(tab []byte, bo binary.ByteOrder) (*Table, error) {
	if len(tab) < 8 {
		return nil, fmt.Errorf("pclntab of %d bytes: %w", len(tab), ErrFormat)
	}
	magic := bo.Uint32(tab)
	if magic != Go120Magic {
		if magic == go118Magic || magic == go116Magic || magic == go12Magic {
			return nil, fmt.Errorf("pclntab magic %#x: %w", magic, ErrOldGo)
		}
		return nil, fmt.Errorf("pclntab magic %#x: %w", magic, ErrFormat)
	}
	t := &Table{ByteOrder: bo, Quantum: uint64(tab[6]), PtrSize: int(tab[7])}
	if t.PtrSize != 4 && t.PtrSize != 8 || t.Quantum == 0 {
		return nil, fmt.Errorf("pclntab pointer size %d, quantum %d: %w", t.PtrSize, t.Quantum, ErrFormat)
	}
	word := func(i int) uint64 {
		off := 8 + i*t.PtrSize
		if off+t.PtrSize > len(tab) {
			return ^uint64(0)
		}
		if t.PtrSize == 4 {
			return uint64(bo.Uint32(tab[off:]))
		}
		return bo.Uint64(tab[off:])
	}
	nfunc := word(0)
	offs := [5]uint64{word(3), word(4), word(5), word(6), word(7)} // funcname, cu, filetab, pctab, pcln
	for _, o := range offs {
		if o > uint64(len(tab)) {
			return nil, fmt.Errorf("pclntab table offset %#x beyond %d bytes: %w", o, len(tab), ErrFormat)
		}
	}
	if nfunc > uint64(len(tab))/8 {
		return nil, fmt.Errorf("pclntab claims %d functions: %w", nfunc, ErrFormat)
	}
	t.NFunc = int(nfunc)
	t.funcnames = tab[offs[0]:]
	t.cutab = tab[offs[1]:]
	t.filetab = tab[offs[2]:]
	t.pctab = tab[offs[3]:]
	t.pcln = tab[offs[4]:]
	if uint64(len(t.pcln)) < (nfunc+1)*8 {
		return nil, fmt.Errorf("pclntab functab of %d functions truncated: %w", nfunc, ErrFormat)
	}
	return t, nil
}

// Func is a decoded runtime._func header (runtime/runtime2.go).
type Func struct {
	Entry    uint64 // absolute address
	End      uint64 // the next function's entry
	NameOff  int32
	PCSP     uint32 // offsets into the pc-value tables
	PCFile   uint32
	PCLn     uint32
	CUOffset uint32
	FuncID   uint8  // internal/abi.FuncID (numbering differs between releases)
	Flag     uint8  // Flag* bits
	PCData   []byte // npcdata uint32 offsets into pctab
	FuncData []byte // nfuncdata uint32 offsets from Gofunc
}

// entryOff returns the text offset of functab entry i (i == NFunc is the end
// of the last function).
func (t *Table) entryOff(i int) uint64 { return uint64(t.ByteOrder.Uint32(t.pcln[i*8:])) }

// Func decodes the i'th function, 0 <= i < NFunc.
func (t *Table) Func(i int) (Func, error) {
	if i < 0 || i >= t.NFunc {
		return Func{}, fmt.Errorf("func %d of %d: %w", i, t.NFunc, ErrFormat)
	}
	foff := uint64(t.ByteOrder.Uint32(t.pcln[i*8+4:]))
	if foff+FuncHeaderSize > uint64(len(t.pcln)) {
		return Func{}, fmt.Errorf("func %d at %#x beyond the table: %w", i, foff, ErrFormat)
	}
	bo := t.ByteOrder
	h := t.pcln[foff:]
	f := Func{
		Entry:    t.TextStart + uint64(bo.Uint32(h)),
		End:      t.TextStart + t.entryOff(i+1),
		NameOff:  int32(bo.Uint32(h[4:])),
		PCSP:     bo.Uint32(h[16:]),
		PCFile:   bo.Uint32(h[20:]),
		PCLn:     bo.Uint32(h[24:]),
		CUOffset: bo.Uint32(h[32:]),
		FuncID:   h[40],
		Flag:     h[41],
	}
	npcdata, nfuncdata := uint64(bo.Uint32(h[28:])), uint64(h[43])
	end := FuncHeaderSize + 4*(npcdata+nfuncdata)
	if npcdata > 1<<16 || end > uint64(len(h)) {
		return Func{}, fmt.Errorf("func %d: %d pcdata tables beyond the table: %w", i, npcdata, ErrFormat)
	}
	f.PCData = h[FuncHeaderSize : FuncHeaderSize+4*npcdata]
	f.FuncData = h[FuncHeaderSize+4*npcdata : end]
	return f, nil
}

// FuncAt finds the function holding pc; ok is false if none does.
func (t *Table) FuncAt(pc uint64) (f Func, ok bool, err error) {
	if pc < t.TextStart || t.NFunc == 0 {
		return Func{}, false, nil
	}
	off := pc - t.TextStart
	if off > 1<<32 || off >= t.entryOff(t.NFunc) {
		return Func{}, false, nil
	}
	i := sort.Search(t.NFunc, func(i int) bool { return t.entryOff(i) > off }) - 1
	if i < 0 {
		return Func{}, false, nil
	}
	f, err = t.Func(i)
	return f, err == nil, err
}

// Name returns the function name at offset off of the name table.
func (t *Table) Name(off int32) string {
	if off < 0 || int(off) >= len(t.funcnames) {
		return ""
	}
	b := t.funcnames[off:]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if len(b) > MaxNameLen {
		b = b[:MaxNameLen]
	}
	return string(b)
}

// File returns the name of file number fno of the compilation unit at
// cuOffset, as the runtime's funcfile does, or "".
func (t *Table) File(cuOffset uint32, fno int64) string {
	if fno < 0 {
		return ""
	}
	i := (uint64(cuOffset) + uint64(fno)) * 4
	if i+4 > uint64(len(t.cutab)) {
		return ""
	}
	foff := t.ByteOrder.Uint32(t.cutab[i:])
	if foff == ^uint32(0) || int(foff) >= len(t.filetab) {
		return ""
	}
	b := t.filetab[foff:]
	if j := bytes.IndexByte(b, 0); j >= 0 {
		b = b[:j]
	}
	return string(b)
}
