package unwind

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"unsafe"
)

// This file is the byte layout of the BPF maps that hold unwind tables; see
// the package documentation for the C side. Everything is little endian with
// explicit padding, and every size below is checked by the tests.

const (
	// RowSize is the size of struct unwind_row.
	RowSize = 12
	// TableInfoSize is the size of struct unwind_table.
	TableInfoSize = 24
	// MappingSize is the size of struct unwind_mapping.
	MappingSize = 32
	// MaxMappings is the number of executable mappings one process can have
	// in struct unwind_proc.
	MaxMappings = 256
	// ProcSize is the size of struct unwind_proc.
	ProcSize = 8 + MaxMappings*MappingSize
	// SearchSteps bounds the binary search over the rows of one table, so a
	// table has at most 1<<SearchSteps rows.
	SearchSteps = 24
	// MappingSearchSteps bounds the binary search over a process's mappings.
	MappingSearchSteps = 9
	// MaxFrames is the deepest stack walked, as PERF_MAX_STACK_DEPTH.
	MaxFrames = 127
)

// Bits of unwind_row.rules.
const (
	rulesCFAMask  = 0x0f
	rulesFPShift  = 4
	rulesFPMask   = 0x03 << rulesFPShift
	rulesRAShift  = 6
	rulesRAMask   = 0x03 << rulesRAShift
	maxTableSpan  = math.MaxUint32 // row PCs are 32-bit offsets from the base
	maxTableRows  = 1 << SearchSteps
	minCFAOffset  = -1 << 23 // the CFA offset is a signed 24-bit field
	maxCFAOffset  = 1<<23 - 1
	mappingFlagFP = 1
)

// Mapping flags (unwind_mapping.flags).
const (
	// MappingFramePointers: walk this mapping with frame pointers; it has no
	// table (Go binaries, binaries without CFI, tables not built yet).
	MappingFramePointers uint32 = mappingFlagFP
)

// ErrFormat is wrapped by errors about data that does not fit the layout.
var ErrFormat = errors.New("unwind: does not fit the map format")

// EncodeRows returns the rows of t in struct unwind_row form, PCs relative to
// the first row's PC (the table's base, see Base).
func (t *Table) EncodeRows() ([]byte, error) {
	if len(t.Rows) > maxTableRows {
		return nil, fmt.Errorf("%d rows: %w", len(t.Rows), ErrFormat)
	}
	if len(t.Rows) == 0 {
		return nil, nil
	}
	base := t.Rows[0].PC
	if span := t.Rows[len(t.Rows)-1].PC - base; span > maxTableSpan {
		return nil, fmt.Errorf("table spans %#x bytes of code: %w", span, ErrFormat)
	}
	b := make([]byte, 0, len(t.Rows)*RowSize)
	for _, r := range t.Rows {
		b = appendRow(b, r, base)
	}
	return b, nil
}

// Base is the virtual address the PCs of the encoded rows are relative to.
func (t *Table) Base() uint64 {
	if len(t.Rows) == 0 {
		return 0
	}
	return t.Rows[0].PC
}

// Size is the number of bytes the table takes in the rows map.
func (t *Table) Size() int { return len(t.Rows) * RowSize }

// memSize is the number of bytes the table takes in Go memory.
func (t *Table) memSize() int64 { return int64(cap(t.Rows)) * int64(unsafe.Sizeof(Row{})) }

func appendRow(b []byte, r Row, base uint64) []byte {
	rules := byte(r.CFA)&rulesCFAMask | byte(r.FP)<<rulesFPShift&rulesFPMask | byte(r.RA)<<rulesRAShift&rulesRAMask
	b = binary.LittleEndian.AppendUint32(b, uint32(r.PC-base))
	b = binary.LittleEndian.AppendUint32(b, uint32(r.CFAOffset)<<8|uint32(rules))
	b = binary.LittleEndian.AppendUint16(b, uint16(r.FPOffset))
	b = binary.LittleEndian.AppendUint16(b, uint16(r.RAOffset))
	return b
}

// decodeRow reads struct unwind_row number i of rows; base is the table's.
func decodeRow(rows []byte, i uint32, base uint64) (Row, bool) {
	off := uint64(i) * RowSize
	if off+RowSize > uint64(len(rows)) {
		return Row{}, false
	}
	b := rows[off : off+RowSize]
	cfaRules := int32(binary.LittleEndian.Uint32(b[4:]))
	rules := byte(cfaRules)
	return Row{
		PC:        base + uint64(binary.LittleEndian.Uint32(b[0:])),
		CFAOffset: cfaRules >> 8, // arithmetic shift: the offset is signed
		FPOffset:  int16(binary.LittleEndian.Uint16(b[8:])),
		RAOffset:  int16(binary.LittleEndian.Uint16(b[10:])),
		CFA:       CFAKind(rules & rulesCFAMask),
		FP:        FPRule(rules & rulesFPMask >> rulesFPShift),
		RA:        RARule(rules & rulesRAMask >> rulesRAShift),
	}, true
}

// TableInfo is struct unwind_table: where a table's rows are in the rows map.
type TableInfo struct {
	Base     uint64 // virtual address row PCs are relative to
	FirstRow uint32 // index of the table's first row in the rows map
	NumRows  uint32
	Arch     Arch
}

// MarshalBinary encodes struct unwind_table.
func (ti TableInfo) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, TableInfoSize)
	b = binary.LittleEndian.AppendUint64(b, ti.Base)
	b = binary.LittleEndian.AppendUint32(b, ti.FirstRow)
	b = binary.LittleEndian.AppendUint32(b, ti.NumRows)
	b = binary.LittleEndian.AppendUint32(b, uint32(ti.Arch))
	b = binary.LittleEndian.AppendUint32(b, 0) // _pad
	return b, nil
}

// UnmarshalBinary decodes struct unwind_table.
func (ti *TableInfo) UnmarshalBinary(b []byte) error {
	if len(b) != TableInfoSize {
		return fmt.Errorf("unwind_table of %d bytes: %w", len(b), ErrFormat)
	}
	ti.Base = binary.LittleEndian.Uint64(b)
	ti.FirstRow = binary.LittleEndian.Uint32(b[8:])
	ti.NumRows = binary.LittleEndian.Uint32(b[12:])
	ti.Arch = Arch(binary.LittleEndian.Uint32(b[16:]))
	return nil
}

// Mapping is struct unwind_mapping: an executable mapping of a process.
type Mapping struct {
	Start, End uint64 // runtime addresses [Start, End)
	Bias       uint64 // runtime address minus ELF virtual address
	TableID    uint32 // index in the tables map, unless MappingFramePointers
	Flags      uint32
}

// EncodeProc builds struct unwind_proc from a process's executable mappings.
// They are sorted by Start and must not overlap.
func EncodeProc(ms []Mapping) ([]byte, error) {
	if len(ms) > MaxMappings {
		return nil, fmt.Errorf("%d executable mappings, at most %d: %w", len(ms), MaxMappings, ErrFormat)
	}
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b Mapping) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	for i, m := range ms {
		if m.End <= m.Start || (i > 0 && m.Start < ms[i-1].End) {
			return nil, fmt.Errorf("mapping %#x-%#x empty or overlapping: %w", m.Start, m.End, ErrFormat)
		}
	}
	b := make([]byte, ProcSize)
	binary.LittleEndian.PutUint32(b, uint32(len(ms)))
	for i, m := range ms {
		e := b[8+i*MappingSize:]
		binary.LittleEndian.PutUint64(e[0:], m.Start)
		binary.LittleEndian.PutUint64(e[8:], m.End)
		binary.LittleEndian.PutUint64(e[16:], m.Bias)
		binary.LittleEndian.PutUint32(e[24:], m.TableID)
		binary.LittleEndian.PutUint32(e[28:], m.Flags)
	}
	return b, nil
}

func decodeMapping(proc []byte, i uint32) Mapping {
	e := proc[8+int(i)*MappingSize:]
	return Mapping{
		Start:   binary.LittleEndian.Uint64(e[0:]),
		End:     binary.LittleEndian.Uint64(e[8:]),
		Bias:    binary.LittleEndian.Uint64(e[16:]),
		TableID: binary.LittleEndian.Uint32(e[24:]),
		Flags:   binary.LittleEndian.Uint32(e[28:]),
	}
}

// Maps is the contents of the three BPF maps, in the same bytes the kernel
// sees: the reference unwinder reads only these.
type Maps struct {
	Rows   []byte            // unwind_rows: RowSize bytes per row
	Tables []byte            // unwind_tables: TableInfoSize bytes per table id
	Procs  map[uint32][]byte // unwind_procs: tgid -> ProcSize bytes
}

// AddTable appends t's rows and a table entry, and returns the table id.
func (m *Maps) AddTable(t *Table) (uint32, error) {
	rows, err := t.EncodeRows()
	if err != nil {
		return 0, err
	}
	first := len(m.Rows) / RowSize
	if first+len(t.Rows) > math.MaxUint32 {
		return 0, fmt.Errorf("rows map full: %w", ErrFormat)
	}
	ti := TableInfo{Base: t.Base(), FirstRow: uint32(first), NumRows: uint32(len(t.Rows)), Arch: t.Arch}
	b, _ := ti.MarshalBinary()
	id := uint32(len(m.Tables) / TableInfoSize)
	m.Rows = append(m.Rows, rows...)
	m.Tables = append(m.Tables, b...)
	return id, nil
}

// SetProc stores the mappings of process pid.
func (m *Maps) SetProc(pid uint32, ms []Mapping) error {
	b, err := EncodeProc(ms)
	if err != nil {
		return err
	}
	if m.Procs == nil {
		m.Procs = make(map[uint32][]byte)
	}
	m.Procs[pid] = b
	return nil
}
