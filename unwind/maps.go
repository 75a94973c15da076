package unwind

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// This file is the per-process half of the map layout: the executable
// mappings of a process and the tables they use.

const (
	// MappingSize is the size of struct unwind_mapping.
	MappingSize = 32
	// MaxMappings is the number of executable mappings one process can have
	// in struct unwind_proc.
	MaxMappings = 256
	// ProcSize is the size of struct unwind_proc.
	ProcSize = 8 + MaxMappings*MappingSize
	// MappingSearchSteps bounds the binary search over a process's mappings.
	MappingSearchSteps = 9
)

// MappingFramePointers (unwind_mapping.flags): walk this mapping with frame
// pointers; it has no table (Go before 1.20, binaries without CFI, tables not
// loaded yet).
const MappingFramePointers uint32 = 1

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

// Maps is the contents of the BPF maps, in the same bytes the kernel sees:
// the reference unwinder reads only these.
type Maps struct {
	Rows   []byte            // unwind_rows: RowSize bytes per row
	Rules  []byte            // unwind_rules: RuleSize bytes per rule
	Pages  []byte            // unwind_pages: PageSize bytes per page
	Tables []byte            // unwind_tables: TableInfoSize bytes per table id
	Procs  map[uint32][]byte // unwind_procs: tgid -> ProcSize bytes

	// Fill, if set, is called by Unwind once for each table id a walk
	// needs that Tables does not hold; it may add the table (PutTable).
	// A view of a process's tables then holds only those its walks reach
	// instead of every library it maps.
	Fill   func(id uint32)
	filled map[uint32]bool
	// shared are the tables ShareTable set: read in place, their
	// TableInfo's first row, rule and page 0 in their own arrays.
	shared map[uint32]*Encoded
}

// AddTable appends the arrays of t and a table entry, and returns the table
// id. (A loader writing real maps places them with a Space instead.)
func (m *Maps) AddTable(t *Table) (uint32, error) {
	e, err := t.Encode()
	if err != nil {
		return 0, err
	}
	id := uint32(len(m.Tables) / TableInfoSize)
	return id, m.PutTable(id, e)
}

// PutTable appends the arrays of e and sets table id's entry to them.
func (m *Maps) PutTable(id uint32, e *Encoded) error {
	if len(m.Rows)/RowSize+e.NumRows() > math.MaxUint32 {
		return fmt.Errorf("rows map full: %w", ErrFormat)
	}
	ti := TableInfo{
		Base:     e.Base,
		FirstRow: uint32(len(m.Rows) / RowSize), NumRows: uint32(e.NumRows()),
		FirstPage: uint32(len(m.Pages) / PageSize), NumPages: uint32(e.NumPages()),
		FirstRule: uint32(len(m.Rules) / RuleSize), NumRules: uint32(e.NumRules()),
		Arch: e.Arch,
	}
	b, _ := ti.MarshalBinary()
	m.Rows = append(m.Rows, e.Rows...)
	m.Rules = append(m.Rules, e.Rules...)
	m.Pages = append(m.Pages, e.Pages...)
	off := int(id) * TableInfoSize
	if need := off + TableInfoSize; len(m.Tables) < need {
		m.Tables = append(m.Tables, make([]byte, need-len(m.Tables))...)
	}
	copy(m.Tables[off:], b)
	return nil
}

// ShareTable sets table id's entry to the arrays of e, which are read in
// place, not appended to Rows, Rules and Pages: a view of a process that
// reaches a large table (a Go binary's, megabytes) costs no copy of it. e
// must not change while m is used (Table.Encoded's never does).
func (m *Maps) ShareTable(id uint32, e *Encoded) error {
	ti := TableInfo{
		Base: e.Base, NumRows: uint32(e.NumRows()), NumPages: uint32(e.NumPages()), NumRules: uint32(e.NumRules()),
		Arch: e.Arch,
	}
	b, _ := ti.MarshalBinary()
	off := int(id) * TableInfoSize
	if need := off + TableInfoSize; len(m.Tables) < need {
		m.Tables = append(m.Tables, make([]byte, need-len(m.Tables))...)
	}
	copy(m.Tables[off:], b)
	if m.shared == nil {
		m.shared = map[uint32]*Encoded{}
	}
	m.shared[id] = e
	return nil
}

// tableArrays are the rows, rules and pages a table's TableInfo indexes.
type tableArrays struct{ rows, rules, pages []byte }

// arrays returns the arrays table id's entry indexes: its own if shared
// (ShareTable), else the flat ones.
func (m *Maps) arrays(id uint32) tableArrays {
	if e := m.shared[id]; e != nil {
		return tableArrays{e.Rows, e.Rules, e.Pages}
	}
	return tableArrays{m.Rows, m.Rules, m.Pages}
}

// table returns the entry of table id, asking Fill for it once if it is
// missing.
func (m *Maps) table(id uint32) (TableInfo, bool) {
	var ti TableInfo
	off := uint64(id) * TableInfoSize
	ok := func() bool {
		return off+TableInfoSize <= uint64(len(m.Tables)) && ti.UnmarshalBinary(m.Tables[off:off+TableInfoSize]) == nil && ti.NumPages != 0
	}
	if ok() {
		return ti, true
	}
	if m.Fill == nil || m.filled[id] {
		return ti, false
	}
	if m.filled == nil {
		m.filled = map[uint32]bool{}
	}
	m.filled[id] = true
	m.Fill(id)
	return ti, ok()
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
