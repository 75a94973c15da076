package unwind

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// This file is the byte layout of the BPF maps that hold unwind tables; see
// the package documentation for the C side. Everything is little endian with
// explicit padding, and every size below is checked by the tests.
//
// A table is three arrays. Its code is cut into pages of 64 KiB from its
// base; each page has a run of rows, sorted, with a 16-bit PC offset inside
// the page and a 16-bit index into the table's rules, and the first row of
// every page is at offset 0. The rules (how to find CFA, RA and FP) are few
// per binary (hundreds), so each is stored once.

const (
	// RowSize is the size of struct unwind_row.
	RowSize = 4
	// RuleSize is the size of struct unwind_rule.
	RuleSize = 8
	// PageSize is the size of struct unwind_page.
	PageSize = 8
	// TableInfoSize is the size of struct unwind_table.
	TableInfoSize = 40
	// PageShift: a page covers 1<<PageShift bytes of code.
	PageShift = 16
	// SearchSteps bounds the binary search over the rows of one page: a
	// page has at most 1<<SearchSteps rows, one per byte of code.
	SearchSteps = PageShift
	// MaxFrames is the deepest stack walked, as PERF_MAX_STACK_DEPTH.
	MaxFrames = 127
)

// Bits of unwind_rule.cfa_rules.
const (
	rulesCFAMask = 0x0f
	rulesFPShift = 4
	rulesFPMask  = 0x03 << rulesFPShift
	rulesRAShift = 6
	rulesRAMask  = 0x03 << rulesRAShift
	minCFAOffset = -1 << 23 // the CFA offset is a signed 24-bit field
	maxCFAOffset = 1<<23 - 1
	maxRules     = 1 << 16               // rule indexes are 16-bit
	maxPages     = 1 << (32 - PageShift) // 4 GiB of code
)

// TableVersion is the version of the tables this package builds, in map
// form. A table kept from an earlier run (internal/tracer keeps them on
// disk, by binary) is used only by an Ember of the same version, and every
// Ember of that version uses it, whatever its own build: so bump it with
// every change to what NewTable builds for a binary (the CFI and pclntab
// readers' rows and rules, merging, limits, Stats) or to the map form in
// this file, or stacks are walked with the old tables.
const TableVersion = 1

// ErrFormat is wrapped by errors about data that does not fit the layout.
var ErrFormat = errors.New("unwind: does not fit the map format")

// Encoded is a table in map form. Its page entries index rows from the
// table's first row and its rows index rules from the table's first rule,
// so the bytes do not depend on where a loader puts them.
type Encoded struct {
	Arch  Arch
	Base  uint64 // virtual address of page 0
	Rows  []byte // struct unwind_row, RowSize bytes each
	Rules []byte // struct unwind_rule, RuleSize bytes each
	Pages []byte // struct unwind_page, PageSize bytes each
}

// NumRows, NumRules and NumPages count the entries of each array.
func (e *Encoded) NumRows() int  { return len(e.Rows) / RowSize }
func (e *Encoded) NumRules() int { return len(e.Rules) / RuleSize }
func (e *Encoded) NumPages() int { return len(e.Pages) / PageSize }

// Size is the number of bytes the table takes in the maps.
func (e *Encoded) Size() int { return len(e.Rows) + len(e.Rules) + len(e.Pages) + TableInfoSize }

// Encoded returns Encode's result, made on the first call and kept with
// the table, which must not change after it: the tracer writes a table
// into the kernel's maps once but walks the copied stacks of every process
// that maps it with it too (internal/tracer/stackcopy.go), and encoding
// libc's or a compiler's table once per process cost a whole-system
// recording more CPU than the rest of its unwinding. The map form is about
// a sixth of the table's size (4 bytes a row against 24).
func (t *Table) Encoded() (*Encoded, error) {
	t.enc.once.Do(func() { t.enc.e, t.enc.err = t.Encode() })
	return t.enc.e, t.enc.err
}

// Encode lays the table out in map form.
func (t *Table) Encode() (*Encoded, error) {
	e := &Encoded{Arch: t.Arch}
	if len(t.Rows) == 0 {
		return nil, fmt.Errorf("empty table: %w", ErrFormat)
	}
	// Pages start at the first row, rounded down to a page.
	e.Base = t.Rows[0].PC &^ (1<<PageShift - 1)
	last := t.Rows[len(t.Rows)-1].PC // a CFANone end marker
	npages := (last-e.Base)>>PageShift + 1
	if npages > maxPages {
		return nil, fmt.Errorf("table spans %#x bytes of code: %w", last-e.Base, ErrFormat)
	}
	ruleIndex := make(map[uint64]uint16)
	e.Rows = make([]byte, 0, (len(t.Rows)+int(npages))*RowSize)
	e.Pages = make([]byte, 0, npages*PageSize)
	i := 0 // next row of t
	covering := Row{CFA: CFANone}
	for p := uint64(0); p < npages; p++ {
		start := e.Base + p<<PageShift
		lastByte := start + (1<<PageShift - 1) // inclusive: the top page's end would wrap to 0
		first := e.NumRows()
		// Every page begins with the rule that covers its first byte.
		if i >= len(t.Rows) || t.Rows[i].PC != start {
			covering.PC = start
			if err := e.appendRow(covering, start, ruleIndex); err != nil {
				return nil, err
			}
		}
		for ; i < len(t.Rows) && t.Rows[i].PC <= lastByte; i++ {
			if err := e.appendRow(t.Rows[i], start, ruleIndex); err != nil {
				return nil, err
			}
			covering = t.Rows[i]
		}
		e.Pages = binary.LittleEndian.AppendUint32(e.Pages, uint32(first))
		e.Pages = binary.LittleEndian.AppendUint32(e.Pages, uint32(e.NumRows()-first))
	}
	if e.NumRows() > math.MaxUint32 {
		return nil, fmt.Errorf("%d rows: %w", e.NumRows(), ErrFormat)
	}
	return e, nil
}

func (e *Encoded) appendRow(r Row, pageStart uint64, ruleIndex map[uint64]uint16) error {
	rule := encodeRule(r)
	idx, ok := ruleIndex[rule]
	if !ok {
		if len(ruleIndex) >= maxRules {
			return fmt.Errorf("more than %d distinct rules: %w", maxRules, ErrFormat)
		}
		idx = uint16(len(ruleIndex))
		ruleIndex[rule] = idx
		e.Rules = binary.LittleEndian.AppendUint64(e.Rules, rule)
	}
	e.Rows = binary.LittleEndian.AppendUint16(e.Rows, uint16(r.PC-pageStart))
	e.Rows = binary.LittleEndian.AppendUint16(e.Rows, idx)
	return nil
}

// encodeRule packs the rules of r as struct unwind_rule, read as a uint64.
func encodeRule(r Row) uint64 {
	rules := byte(r.CFA)&rulesCFAMask | byte(r.FP)<<rulesFPShift&rulesFPMask | byte(r.RA)<<rulesRAShift&rulesRAMask
	var b [RuleSize]byte
	binary.LittleEndian.PutUint32(b[0:], uint32(r.CFAOffset)<<8|uint32(rules))
	binary.LittleEndian.PutUint16(b[4:], uint16(r.FPOffset))
	binary.LittleEndian.PutUint16(b[6:], uint16(r.RAOffset))
	return binary.LittleEndian.Uint64(b[:])
}

// decodeRule reads struct unwind_rule i of rules into a Row without a PC.
func decodeRule(rules []byte, i uint64) (Row, bool) {
	off := i * RuleSize
	if off+RuleSize > uint64(len(rules)) {
		return Row{}, false
	}
	b := rules[off : off+RuleSize]
	cfaRules := int32(binary.LittleEndian.Uint32(b))
	k := byte(cfaRules)
	return Row{
		CFAOffset: cfaRules >> 8, // arithmetic shift: the offset is signed
		FPOffset:  int16(binary.LittleEndian.Uint16(b[4:])),
		RAOffset:  int16(binary.LittleEndian.Uint16(b[6:])),
		CFA:       CFAKind(k & rulesCFAMask),
		FP:        FPRule(k & rulesFPMask >> rulesFPShift),
		RA:        RARule(k & rulesRAMask >> rulesRAShift),
	}, true
}

// decodeRow reads struct unwind_row i: PC offset in its page and rule index.
func decodeRow(rows []byte, i uint64) (pcLo, rule uint16, ok bool) {
	off := i * RowSize
	if off+RowSize > uint64(len(rows)) {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint16(rows[off:]), binary.LittleEndian.Uint16(rows[off+2:]), true
}

// decodePage reads struct unwind_page i.
func decodePage(pages []byte, i uint64) (firstRow, nrows uint32, ok bool) {
	off := i * PageSize
	if off+PageSize > uint64(len(pages)) {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint32(pages[off:]), binary.LittleEndian.Uint32(pages[off+4:]), true
}

// memSize is the number of bytes the table takes in Go memory.
func (t *Table) memSize() int64 {
	n := int64(cap(t.Rows)) * int64(unsafe.Sizeof(Row{}))
	if e := t.enc.e; e != nil {
		n += int64(cap(e.Rows) + cap(e.Rules) + cap(e.Pages))
	}
	return n
}

// Compact makes the map form (Encoded) and drops the rows, which take six
// times its memory (24 bytes a row against 4): a table kept to be written
// into the kernel's maps and to walk copied stacks with needs nothing else.
// libLLVM's 2.6M rows are 62 MB as rows, 11 MB in map form. Afterwards
// Rows is nil (Encode and Lookup find nothing); Encoded, Stats, Errors and
// Go remain. Call it before the table is shared.
func (t *Table) Compact() error {
	if _, err := t.Encoded(); err != nil {
		return err
	}
	t.Rows = nil
	return nil
}

// Compacted returns the table whose map form is e, as Compact leaves a
// table, with the counts of the table it was made from: a table read back
// from where an earlier run kept it. e is checked first: its pages and rows
// must index rows and rules within bounds.
func Compacted(e *Encoded, stats Stats, goStats *GoStats, errs []error) (*Table, error) {
	if err := e.check(); err != nil {
		return nil, err
	}
	t := &Table{Arch: e.Arch, Stats: stats, Go: goStats, Errors: errs}
	t.enc.once.Do(func() { t.enc.e = e })
	return t, nil
}

// check reports a map form whose arrays do not index each other within
// bounds, as Encode never makes one: each page has at least one row and at
// most one a byte, and every row names one of the rules.
func (e *Encoded) check() error {
	if e.Arch != AMD64 && e.Arch != ARM64 {
		return fmt.Errorf("architecture %d: %w", e.Arch, ErrFormat)
	}
	if len(e.Rows)%RowSize != 0 || len(e.Rules)%RuleSize != 0 || len(e.Pages)%PageSize != 0 {
		return fmt.Errorf("arrays of %d, %d, %d bytes: %w", len(e.Rows), len(e.Rules), len(e.Pages), ErrFormat)
	}
	if e.NumPages() == 0 || e.NumPages() > maxPages || e.NumRules() > maxRules {
		return fmt.Errorf("%d pages, %d rules: %w", e.NumPages(), e.NumRules(), ErrFormat)
	}
	next := uint64(0) // pages index consecutive runs of rows
	for i := range uint64(e.NumPages()) {
		first, n, _ := decodePage(e.Pages, i)
		if uint64(first) != next || n == 0 || n > 1<<SearchSteps {
			return fmt.Errorf("page %d: rows %d+%d: %w", i, first, n, ErrFormat)
		}
		next += uint64(n)
	}
	if next != uint64(e.NumRows()) {
		return fmt.Errorf("pages cover %d of %d rows: %w", next, e.NumRows(), ErrFormat)
	}
	for i := 0; i < len(e.Rows); i += RowSize {
		if int(binary.LittleEndian.Uint16(e.Rows[i+2:])) >= e.NumRules() {
			return fmt.Errorf("row %d: rule out of range: %w", i/RowSize, ErrFormat)
		}
	}
	return nil
}

// TableInfo is struct unwind_table: where a table's arrays are in the maps.
type TableInfo struct {
	Base                uint64 // virtual address of page 0
	FirstRow, NumRows   uint32 // in unwind_rows
	FirstPage, NumPages uint32 // in unwind_pages
	FirstRule, NumRules uint32 // in unwind_rules
	Arch                Arch
}

// MarshalBinary encodes struct unwind_table.
func (ti TableInfo) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, TableInfoSize)
	b = binary.LittleEndian.AppendUint64(b, ti.Base)
	for _, v := range []uint32{ti.FirstRow, ti.NumRows, ti.FirstPage, ti.NumPages, ti.FirstRule, ti.NumRules, uint32(ti.Arch), 0} {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b, nil
}

// UnmarshalBinary decodes struct unwind_table.
func (ti *TableInfo) UnmarshalBinary(b []byte) error {
	if len(b) != TableInfoSize {
		return fmt.Errorf("unwind_table of %d bytes: %w", len(b), ErrFormat)
	}
	u := func(i int) uint32 { return binary.LittleEndian.Uint32(b[8+4*i:]) }
	*ti = TableInfo{
		Base:     binary.LittleEndian.Uint64(b),
		FirstRow: u(0), NumRows: u(1),
		FirstPage: u(2), NumPages: u(3),
		FirstRule: u(4), NumRules: u(5),
		Arch: Arch(u(6)),
	}
	return nil
}
