package unwind

import (
	"debug/elf"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
)

// Sentinel errors.
var (
	// ErrNoFrameInfo: the binary has neither .eh_frame nor .debug_frame.
	ErrNoFrameInfo = errors.New("unwind: no call frame information")
	// ErrUnsupportedArch: tables exist only for x86-64 and arm64.
	ErrUnsupportedArch = errors.New("unwind: unsupported architecture")
	// ErrTooLarge: a section or table is over the caps of this package.
	ErrTooLarge = errors.New("unwind: too large")
	// ErrInternal reports a panic recovered while building a table: a
	// bug that hostile input reached. The binary's table is lost, and the
	// caller counts it (the tracer's UnwindStats.BadBinaries).
	ErrInternal = errors.New("unwind: internal error")
)

// Caps for hostile input. The biggest binary on the development machine
// (libclang-cpp.so.19.1) has 6.7 MB of .eh_frame and 1.35 million rows.
const (
	maxSectionSize = 128 << 20 // bytes of .eh_frame or .debug_frame we accept
	maxRows        = 8 << 20   // rows (and FDEs) of one table: 192 MiB in Go, 32 MiB encoded
)

// Arch is the instruction set a table describes.
type Arch uint8

const (
	AMD64 Arch = 1
	ARM64 Arch = 2
)

func (a Arch) String() string {
	switch a {
	case AMD64:
		return "amd64"
	case ARM64:
		return "arm64"
	}
	return fmt.Sprintf("Arch(%d)", uint8(a))
}

// DWARF register numbers (x86-64 psABI 3.6.2; AAPCS64 DWARF for Arm 4.1).
const (
	amd64RDI = 5
	amd64RBP = 6
	amd64RSP = 7
	amd64RA  = 16
	arm64FP  = 29
	arm64LR  = 30
	arm64SP  = 31
)

// CFAKind says how to compute the canonical frame address of a row, or why
// the row cannot be used. The values are part of the map format (doc.go).
type CFAKind uint8

const (
	CFANone       CFAKind = iota // no FDE covers this address
	CFASP                        // CFA = SP + CFAOffset
	CFAFP                        // CFA = FP + CFAOffset
	CFAPLT                       // CFA = SP + CFAOffset + ((PC&15) >= PLTThreshold ? 8 : 0)
	CFAExpression                // unsupported: any other DW_CFA_def_cfa_expression
	CFAOtherReg                  // unsupported: CFA based on another register
	CFABadRule                   // unsupported: RA or FP rule not representable
	CFAInvalid                   // the FDE's instructions could not be decoded
	CFADerefFP                   // CFA = *(FP + CFAOffset): gcc's stack realignment (DRAP)
)

var cfaKindNames = [...]string{"none", "sp", "fp", "plt", "expression", "other-register", "bad-rule", "invalid", "deref-fp"}

func (k CFAKind) String() string {
	if int(k) < len(cfaKindNames) {
		return cfaKindNames[k]
	}
	return fmt.Sprintf("CFAKind(%d)", uint8(k))
}

// Supported reports whether an unwinder can step through a row of this kind.
func (k CFAKind) Supported() bool {
	return k == CFASP || k == CFAFP || k == CFAPLT || k == CFADerefFP
}

// FPRule is how to recover the caller's frame pointer (rbp, x29).
type FPRule uint8

const (
	FPSame      FPRule = iota // unchanged by this function (so far)
	FPOffset                  // saved at CFA + FPOffset
	FPUndefined               // not recoverable
	FPAtFP                    // saved at FP + FPOffset, FP being this frame's (DRAP)
)

// RARule is how to recover the return address.
type RARule uint8

const (
	RAOffset    RARule = iota // saved at CFA + RAOffset (always CFA-8 on x86-64)
	RALink                    // still in the link register: arm64's x30; on x86-64, rdi (see makeRow)
	RAUndefined               // the outermost frame: the stack ends here
	RASwitch                  // as RAOffset, at a switch of stacks: the CFA need not be above SP
)

// Row is one row of an unwind table: the rules that hold from PC up to the
// next row's PC.
type Row struct {
	PC        uint64
	CFA       CFAKind
	FP        FPRule
	RA        RARule
	CFAOffset int32 // 24 bits in the map format
	FPOffset  int16 // with FPOffset; for CFAPLT the threshold K
	RAOffset  int16 // with RAOffset
}

// sameRules reports whether two rows differ only in their PC.
func (r Row) sameRules(o Row) bool {
	r.PC = o.PC
	return r == o
}

// Stats counts what went into a table.
type Stats struct {
	FDEs      int
	RawRows   int        // rows before merging, end-of-FDE markers included
	Kinds     [16]int    // merged rows by CFAKind
	KindBytes [16]uint64 // bytes of code covered by rows of each CFAKind
	Skipped   int        // FDEs dropped: empty, outside code, or overlapping
	BadFDEs   int        // FDEs whose instructions could not be decoded (CFAInvalid)
}

// Table is the unwind table of one binary, sorted by PC, in the binary's own
// virtual addresses (before load bias).
type Table struct {
	Arch  Arch
	Rows  []Row
	Stats Stats
	// Errors are the first few errors decoding FDE instructions: each cost
	// only its own function, which has a CFAInvalid row.
	Errors []error
	// Go counts the Go functions of a Go binary's table (nil otherwise).
	Go *GoStats

	enc encodedOnce // Encoded's
}

// encodedOnce holds a table's map form once Encoded has made it.
type encodedOnce struct {
	once sync.Once
	e    *Encoded
	err  error
}

// maxErrors is how many FDE errors a Table keeps.
const maxErrors = 8

// Lookup returns the row that covers pc, or false.
func (t *Table) Lookup(pc uint64) (Row, bool) {
	i := sort.Search(len(t.Rows), func(i int) bool { return t.Rows[i].PC > pc })
	if i == 0 {
		return Row{}, false
	}
	return t.Rows[i-1], true
}

// Open builds the table of the ELF file at path.
func Open(path string) (*Table, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return NewTable(f)
}

// NewTable builds the table of an ELF file from its .eh_frame and, for code
// that .eh_frame does not cover, its .debug_frame. FDEs outside executable
// segments (such as those of functions the linker discarded) are dropped.
// The Go code of a Go binary is described from its pclntab instead (see
// gotable.go), and its other code (cgo) from its CFI; a Go binary built
// before Go 1.20 gets an error wrapping ErrOldGo.
func NewTable(f *elf.File) (*Table, error) {
	if IsGo(f) {
		arch, err := archOf(f)
		if err != nil {
			return nil, err
		}
		return newGoTable(f, arch)
	}
	return NewTableFunc(f, nil)
}

func archOf(f *elf.File) (Arch, error) {
	switch f.Machine {
	case elf.EM_X86_64:
		return AMD64, nil
	case elf.EM_AARCH64:
		return ARM64, nil
	}
	return 0, fmt.Errorf("%v: %w", f.Machine, ErrUnsupportedArch)
}

// NewTableFunc builds the table of an ELF file from its CFI alone, keeping
// only the FDEs whose code [lo, hi) keep accepts (all, if keep is nil).
func NewTableFunc(f *elf.File, keep func(lo, hi uint64) bool) (*Table, error) {
	return newCFITable(f, keep, ".eh_frame", ".debug_frame")
}

func newCFITable(f *elf.File, keep func(lo, hi uint64) bool, sections ...string) (*Table, error) {
	var arch Arch
	switch f.Machine {
	case elf.EM_X86_64:
		arch = AMD64
	case elf.EM_AARCH64:
		arch = ARM64
	default:
		return nil, fmt.Errorf("%v: %w", f.Machine, ErrUnsupportedArch)
	}
	var secs []Section
	var dataBase uint64
	if got := f.Section(".got"); got != nil {
		dataBase = got.Addr
	}
	for _, name := range sections {
		s := f.Section(name)
		if s == nil || s.Type == elf.SHT_NOBITS {
			continue
		}
		if s.Size > maxSectionSize {
			return nil, fmt.Errorf("%s: %d bytes: %w", name, s.Size, ErrTooLarge)
		}
		data, err := s.Data()
		if err != nil {
			return nil, fmt.Errorf("unwind: reading %s: %w", name, err)
		}
		kind := EHFrame
		if name == ".debug_frame" {
			kind = DebugFrame
		}
		secs = append(secs, Section{Kind: kind, Data: data, Addr: s.Addr, DataBase: dataBase})
	}
	if len(secs) == 0 {
		return nil, ErrNoFrameInfo
	}
	var text [][2]uint64
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 {
			text = append(text, [2]uint64{p.Vaddr, p.Vaddr + p.Memsz})
		}
	}
	inText := func(lo, hi uint64) bool {
		if keep != nil && !keep(lo, hi) {
			return false
		}
		if len(text) == 0 {
			return true // relocatable objects and debug-only files
		}
		for _, t := range text {
			if lo >= t[0] && hi <= t[1] {
				return true
			}
		}
		return false
	}
	return buildTable(arch, secs, inText)
}

// BuildTable builds a table from raw call frame sections; .eh_frame sections
// take precedence over .debug_frame for code both describe. It never panics.
func BuildTable(arch Arch, secs ...Section) (*Table, error) {
	return buildTable(arch, secs, nil)
}

func buildTable(arch Arch, secs []Section, keep func(lo, hi uint64) bool) (t *Table, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("%w building table: %v", ErrInternal, r)
		}
	}()
	var fpReg uint64
	switch arch {
	case AMD64:
		fpReg = amd64RBP
	case ARM64:
		fpReg = arm64FP
	default:
		return nil, fmt.Errorf("%v: %w", arch, ErrUnsupportedArch)
	}
	type entry struct {
		sec *Section
		f   *fde
		pri int
	}
	var fdes []entry
	t = &Table{Arch: arch}
	secs = slices.Clone(secs)
	slices.SortStableFunc(secs, func(a, b Section) int { return int(a.Kind) - int(b.Kind) })
	for i := range secs {
		sec := &secs[i]
		err := parseFrames(sec, func(f *fde) error {
			if f.begin == f.end || (keep != nil && !keep(f.begin, f.end)) {
				t.Stats.Skipped++
				return nil
			}
			if len(fdes) >= maxRows {
				return fmt.Errorf("unwind: more than %d FDEs: %w", maxRows, ErrTooLarge)
			}
			fdes = append(fdes, entry{sec, f, i})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	// Address order; for equal starts the higher priority section first, so
	// that the overlap check below drops the .debug_frame duplicate.
	slices.SortStableFunc(fdes, func(a, b entry) int {
		switch {
		case a.f.begin < b.f.begin:
			return -1
		case a.f.begin > b.f.begin:
			return 1
		}
		return a.pri - b.pri
	})
	rows := make([]Row, 0, len(fdes)*4)
	var p program
	p.fpReg = fpReg
	var coveredTo uint64
	for _, e := range fdes {
		f := e.f
		if f.begin < coveredTo {
			t.Stats.Skipped++ // overlaps an FDE already in the table
			continue
		}
		t.Stats.FDEs++
		// Cut the previous FDE's end marker if this one starts right there.
		if n := len(rows); n > 0 && rows[n-1].PC == f.begin && rows[n-1].CFA == CFANone {
			rows = rows[:n-1]
		}
		p.sec = e.sec
		start := len(rows)
		var emitErr error
		err := p.run(f, func(pc uint64, st *frameState) {
			row := makeRow(arch, fpReg, f.cie.raReg, pc, st)
			if n := len(rows); n > 0 && rows[n-1].PC == pc {
				rows[n-1] = row
				return
			}
			if len(rows) >= maxRows {
				emitErr = fmt.Errorf("unwind: more than %d rows: %w", maxRows, ErrTooLarge)
				return
			}
			rows = append(rows, row)
			t.Stats.RawRows++
		})
		if emitErr != nil {
			return nil, emitErr
		}
		if err != nil {
			// A bad FDE costs its own function only.
			t.Stats.BadFDEs++
			if len(t.Errors) < maxErrors {
				t.Errors = append(t.Errors, err)
			}
			t.Stats.RawRows -= len(rows) - start
			rows = append(rows[:start], Row{PC: f.begin, CFA: CFAInvalid})
			t.Stats.RawRows++
		}
		rows = append(rows, Row{PC: f.end, CFA: CFANone})
		t.Stats.RawRows++
		coveredTo = f.end
	}
	t.Rows = mergeRows(rows)
	for i, r := range t.Rows {
		t.Stats.Kinds[r.CFA]++
		if i+1 < len(t.Rows) {
			t.Stats.KindBytes[r.CFA] += t.Rows[i+1].PC - r.PC
		}
	}
	return t, nil
}

// mergeRows drops each row whose rules equal those of the row before it.
func mergeRows(rows []Row) []Row {
	out := rows[:0]
	for _, r := range rows {
		if n := len(out); n > 0 && out[n-1].sameRules(r) {
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// makeRow turns the DWARF rules of one row into the compact row, marking what
// the compact form cannot express instead of guessing.
func makeRow(arch Arch, fpReg, raReg uint64, pc uint64, st *frameState) Row {
	row := Row{PC: pc}
	spReg := uint64(amd64RSP)
	if arch == ARM64 {
		spReg = arm64SP
	}
	switch {
	case st.cfa.isExpr:
		row.CFA = CFAExpression
		if off, ok := bregExpression(st.cfa.expr, fpReg, true); ok && off >= minCFAOffset && off <= maxCFAOffset {
			row.CFA, row.CFAOffset = CFADerefFP, int32(off)
		}
		if arch == AMD64 {
			if off, k, ok := pltExpression(st.cfa.expr); ok && off >= 0 && off <= maxCFAOffset {
				row.CFA, row.CFAOffset, row.FPOffset = CFAPLT, int32(off), int16(k)
			}
		}
	case st.cfa.off < minCFAOffset || st.cfa.off > maxCFAOffset:
		row.CFA = CFABadRule
	case st.cfa.reg == spReg:
		row.CFA, row.CFAOffset = CFASP, int32(st.cfa.off)
	case st.cfa.reg == fpReg:
		row.CFA, row.CFAOffset = CFAFP, int32(st.cfa.off)
	default:
		row.CFA = CFAOtherReg
	}
	bad := false
	switch st.fp.kind {
	case ruleUnspecified, ruleSame:
		row.FP = FPSame
	case ruleUndefined:
		row.FP = FPUndefined
	case ruleOffset:
		if st.fp.off < math.MinInt16 || st.fp.off > math.MaxInt16 {
			bad = true
		} else if row.CFA != CFAPLT {
			row.FP, row.FPOffset = FPOffset, int16(st.fp.off)
		} else {
			bad = true // the PLT row keeps its threshold in FPOffset
		}
	case ruleRegister:
		if st.fp.reg == fpReg {
			row.FP = FPSame
		} else {
			bad = true
		}
	case ruleExpr:
		// "saved at the address FP+off": the frame pointer of a realigned
		// frame points at the saved one.
		if off, ok := bregExpression(st.fp.expr, fpReg, false); ok && off >= math.MinInt16 && off <= math.MaxInt16 && row.CFA != CFAPLT {
			row.FP, row.FPOffset = FPAtFP, int16(off)
		} else {
			bad = true
		}
	default:
		bad = true
	}
	switch st.ra.kind {
	case ruleUndefined:
		row.RA = RAUndefined
	case ruleOffset:
		if st.ra.off < math.MinInt16 || st.ra.off > math.MaxInt16 {
			bad = true
		} else {
			row.RA, row.RAOffset = RAOffset, int16(st.ra.off)
		}
	case ruleUnspecified, ruleSame:
		if arch == ARM64 && raReg == arm64LR {
			row.RA = RALink
		} else {
			bad = true
		}
	case ruleRegister:
		// Kept in a register, which only the leaf frame can still have:
		// x30 on arm64, and rdi on x86-64, where glibc's __vfork pops its
		// return address to keep it across the system call, and the
		// parent is off CPU there until its child exits or execs. Both
		// walkers read it from the user registers as Regs.LR.
		if arch == ARM64 && st.ra.reg == arm64LR || arch == AMD64 && st.ra.reg == amd64RDI {
			row.RA = RALink
		} else {
			bad = true
		}
	default:
		bad = true
	}
	if arch == AMD64 && row.RA == RAOffset && row.RAOffset != -8 {
		bad = true // the x86-64 map format fixes RA at CFA-8
	}
	if st.raSigned {
		bad = true // pointer authentication: stripping is not implemented
	}
	if bad && row.CFA.Supported() {
		row.CFA = CFABadRule
	}
	if !row.CFA.Supported() {
		// Unusable rows carry no rules, so that neighbours merge.
		row = Row{PC: pc, CFA: row.CFA}
	}
	return row
}
