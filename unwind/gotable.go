package unwind

import (
	"debug/elf"
	"errors"
	"fmt"
	"slices"

	"github.com/emberprof/ember/symbolize/gopclntab"
)

// Go code is described by its pclntab, not by CFI: a stripped Go binary has
// no .debug_frame, and Go code never has .eh_frame. Each function's pcsp
// table gives the stack pointer's distance from its value at entry (the
// frame size so far) for every PC, the same table the runtime's own
// traceback (runtime/traceback.go) and its CPU profiler unwind with, so
// that a frameless leaf or an assembly function (memmove, aeshashbody,
// sha256.block) is walked as exactly as a function with a frame. The rows
// are those of the map format, so the BPF walker needs nothing new:
//
//	amd64: CFA = SP + delta + 8; RA at CFA-8 (the CALL pushed it); the
//	       caller's RBP at CFA-16 once the prologue's PUSHQ BP has run.
//	arm64: CFA = SP + delta; with delta 0 (a leaf, or the prologue not yet
//	       run) the RA is still in x30; else the prologue stored it at the
//	       frame's bottom, 0(SP) = CFA-delta, and the caller's x29 below it
//	       at CFA-delta-8 (cmd/internal/obj/arm64/obj7.go).
//
// Functions flagged TOPFRAME (runtime.goexit, mstart, rt0_go) end the stack,
// as in the runtime's traceback. Functions flagged SPWRITE (systemstack,
// asmcgocall, mcall, morestack, gogo) write SP with something the pcsp table
// cannot follow (a switch to another stack): past their entry they get a
// frame-pointer step (CFA = FP+16), which is how frame pointers cross the
// switch (the runtime keeps the caller's frame pointer in BP across it),
// flagged RASwitch: the goroutine's stack may be below the g0 stack, so the
// walker lets this step go down. Since Go 1.21 the runtime keeps the frame
// pointer chain whole across systemstack (its execution tracer unwinds with
// frame pointers), and the walk finds systemstack's caller as Go's own
// traceback does (runtime.wbBufFlush <- gcWriteBarrier in TestGoMatchesPprof,
// Go 1.21 to 1.26). runtime.mcall clears the frame pointer: it ends the
// walk instead, as it ends Go's.

// GoStats counts what a Go table holds.
type GoStats struct {
	Funcs      int // functions with rows from the pclntab
	BadFuncs   int // functions whose pcsp table could not be decoded (CFAInvalid)
	TopFrames  int // TOPFRAME functions: RA undefined
	SPWrites   int // SPWRITE functions: a frame-pointer step past entry
	SavedFP    int // amd64 functions whose prologue pushes RBP
	TooLarge   int // runs whose frame does not fit the format (CFABadRule)
	EHFrameFDE int // FDEs of non-Go code (cgo) merged in
}

// ErrOldGo is wrapped when a Go binary predates the pclntab layout of Go
// 1.20: such binaries are walked with frame pointers, and say so.
var ErrOldGo = gopclntab.ErrOldGo

// IsGo reports whether f is a Go binary, whose Go code NewTable describes
// from its pclntab.
func IsGo(f *elf.File) bool { return gopclntab.IsGo(f) }

// elfImage reads an elf.File by file offset through its sections, for
// gopclntab.Find (elf.File does not expose its io.ReaderAt).
type elfImage struct{ f *elf.File }

func (e elfImage) Bytes(off, n uint64) []byte {
	for _, s := range e.f.Sections {
		if s.Type == elf.SHT_NOBITS || off < s.Offset || off-s.Offset >= s.FileSize || n > s.FileSize-(off-s.Offset) {
			continue
		}
		if n > maxSectionSize {
			return nil
		}
		b := make([]byte, n)
		if _, err := s.ReadAt(b, int64(off-s.Offset)); err != nil {
			return nil
		}
		return b
	}
	return nil
}

// newGoTable builds the table of a Go binary: its Go functions from the
// pclntab and, in a cgo binary, everything else from .eh_frame (and
// .debug_frame).
func newGoTable(f *elf.File, arch Arch) (*Table, error) {
	// The symbols help find the pclntab of an externally linked binary;
	// an internally linked one has its section, and reading a big Go
	// binary's symbols costs more than building its table.
	var rt map[string]uint64
	if f.Section(".gopclntab") == nil {
		if syms, err := f.Symbols(); err == nil {
			rt = gopclntab.RuntimeSymbols(syms)
		}
	}
	pt, err := gopclntab.Find(f, elfImage{f}, rt)
	if err != nil {
		return nil, fmt.Errorf("unwind: go pclntab: %w", err)
	}
	if pt == nil {
		return nil, fmt.Errorf("unwind: go binary without a pclntab: %w", ErrNoFrameInfo)
	}
	text := newTextReader(f)
	rows, gs, err := GoRows(arch, pt, text.byteAt)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("unwind: pclntab without functions: %w", ErrNoFrameInfo)
	}
	goLo, goHi := rows[0].PC, rows[len(rows)-1].PC
	// Non-Go code (cgo's C, the C runtime's crt files) from its
	// .eh_frame. Not .debug_frame: in a Go binary that describes the Go
	// functions (the pclntab is the authority for them), and parsing it
	// only to drop it made a big binary's table 5 times slower to build.
	ct, err := newCFITable(f, func(lo, hi uint64) bool { return hi <= goLo || lo >= goHi }, ".eh_frame")
	switch {
	case errors.Is(err, ErrNoFrameInfo):
		ct = &Table{Arch: arch}
	case err != nil:
		return nil, err
	}
	t := &Table{Arch: arch, Stats: ct.Stats, Errors: ct.Errors, Go: &gs}
	gs.EHFrameFDE = ct.Stats.FDEs
	t.Rows = mergeTables(ct.Rows, rows)
	t.Stats.Kinds, t.Stats.KindBytes = [16]int{}, [16]uint64{}
	for i, r := range t.Rows {
		t.Stats.Kinds[r.CFA]++
		if i+1 < len(t.Rows) {
			t.Stats.KindBytes[r.CFA] += t.Rows[i+1].PC - r.PC
		}
	}
	return t, nil
}

// mergeTables merges two sorted row lists that describe disjoint code: where
// one list's end marker (CFANone) falls on the other's first row, the row
// wins.
func mergeTables(a, b []Row) []Row {
	out := make([]Row, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	slices.SortStableFunc(out, func(x, y Row) int {
		switch {
		case x.PC < y.PC:
			return -1
		case x.PC > y.PC:
			return 1
		case x.CFA == CFANone && y.CFA != CFANone:
			return -1 // the marker first, so the row after it wins below
		case y.CFA == CFANone && x.CFA != CFANone:
			return 1
		}
		return 0
	})
	dedup := out[:0]
	for _, r := range out {
		if n := len(dedup); n > 0 && dedup[n-1].PC == r.PC {
			dedup[n-1] = r
			continue
		}
		dedup = append(dedup, r)
	}
	return mergeRows(dedup)
}

// GoRows turns every function of a pclntab into rows, sorted and merged,
// ending with a CFANone row at the end of the last function. textByte
// returns the byte of code at a virtual address (for amd64's prologue
// check), ok false if it cannot. It never panics.
func GoRows(arch Arch, pt *gopclntab.Table, textByte func(addr uint64) (byte, bool)) (rows []Row, gs GoStats, err error) {
	defer func() {
		if r := recover(); r != nil {
			rows, err = nil, fmt.Errorf("%w reading pclntab: %v", ErrInternal, r)
		}
	}()
	if arch != AMD64 && arch != ARM64 {
		return nil, gs, fmt.Errorf("%v: %w", arch, ErrUnsupportedArch)
	}
	if pt.NFunc > maxRows {
		return nil, gs, fmt.Errorf("unwind: %d Go functions: %w", pt.NFunc, ErrTooLarge)
	}
	var end uint64
	for i := 0; i < pt.NFunc; i++ {
		fn, err := pt.Func(i)
		if err != nil || fn.End <= fn.Entry || fn.Entry < end {
			gs.BadFuncs++
			continue
		}
		if len(rows) >= maxRows {
			return nil, gs, fmt.Errorf("unwind: more than %d rows: %w", maxRows, ErrTooLarge)
		}
		if fn.PCSP == 0 {
			end = fn.End // a marker symbol (go:textfipsstart): no code, no table
			continue
		}
		gs.Funcs++
		start := len(rows)
		rows, err = appendFuncRows(rows, arch, pt, fn, textByte, &gs)
		if err != nil {
			gs.BadFuncs++
			rows = append(rows[:start], Row{PC: fn.Entry, CFA: CFAInvalid})
		}
		end = fn.End
		rows = append(rows, Row{PC: fn.End, CFA: CFANone})
	}
	// Each function's end marker is the next one's entry: keep the row.
	out := rows[:0]
	for _, r := range rows {
		if n := len(out); n > 0 && out[n-1].PC == r.PC {
			out[n-1] = r
			continue
		}
		out = append(out, r)
	}
	return mergeRows(out), gs, nil
}

// appendFuncRows appends the rows of one function.
func appendFuncRows(rows []Row, arch Arch, pt *gopclntab.Table, fn gopclntab.Func,
	textByte func(uint64) (byte, bool), gs *GoStats) ([]Row, error) {
	top := fn.Flag&gopclntab.FlagTopFrame != 0
	spwrite := fn.Flag&gopclntab.FlagSPWrite != 0
	// runtime.mcall switches to g0 and clears the frame pointer: Go's
	// traceback ends there (SPWRITE), and so does this walk, complete.
	mcall := spwrite && pt.Name(fn.NameOff) == "runtime.mcall"
	if top {
		gs.TopFrames++
	}
	if spwrite {
		gs.SPWrites++
	}
	savesFP := false // amd64: the first growth of the frame is PUSHQ BP (0x55)
	first := true
	var decodeErr error
	err := pt.PCValues(fn.PCSP, fn.Entry, fn.End, func(lo, hi uint64, delta int64) bool {
		if lo >= fn.End {
			return false
		}
		if arch == AMD64 && first && delta > 0 {
			first = false
			if b, ok := textByte(lo - 1); ok && b == 0x55 && delta == 8 {
				savesFP = true
				gs.SavedFP++
			}
		}
		row := goRow(arch, lo, delta, savesFP)
		switch {
		case top:
			row.RA, row.RAOffset = RAUndefined, 0
		case mcall && lo > fn.Entry:
			row = Row{PC: lo, CFA: CFASP, RA: RAUndefined}
		case spwrite && lo > fn.Entry:
			row = fpStepRow(lo)
		}
		if row.CFA == CFABadRule {
			gs.TooLarge++
		}
		if len(rows) >= maxRows {
			decodeErr = fmt.Errorf("unwind: more than %d rows: %w", maxRows, ErrTooLarge)
			return false
		}
		if n := len(rows); n > 0 && rows[n-1].PC == lo {
			rows[n-1] = row
		} else {
			rows = append(rows, row)
		}
		return true
	})
	if decodeErr != nil {
		return rows, decodeErr
	}
	return rows, err
}

// goRow is the row of a run of PCs whose SP is delta bytes below its value
// at the function's entry.
func goRow(arch Arch, pc uint64, delta int64, savesFP bool) Row {
	if delta < 0 || delta > maxCFAOffset-8 {
		return Row{PC: pc, CFA: CFABadRule}
	}
	if arch == AMD64 {
		r := Row{PC: pc, CFA: CFASP, CFAOffset: int32(delta + 8), RA: RAOffset, RAOffset: -8}
		if savesFP && delta >= 8 {
			r.FP, r.FPOffset = FPOffset, -16
		}
		return r
	}
	if delta == 0 {
		return Row{PC: pc, CFA: CFASP, RA: RALink}
	}
	if delta+8 > 1<<15 {
		return Row{PC: pc, CFA: CFABadRule} // the saved RA is out of int16 reach
	}
	return Row{PC: pc, CFA: CFASP, CFAOffset: int32(delta), RA: RAOffset, RAOffset: int16(-delta),
		FP: FPOffset, FPOffset: int16(-delta - 8)}
}

// fpStepRow is a frame-pointer step as a row: the frame record at FP holds
// the caller's FP and, above it, the return address.
func fpStepRow(pc uint64) Row {
	return Row{PC: pc, CFA: CFAFP, CFAOffset: 16, RA: RASwitch, RAOffset: -8, FP: FPOffset, FPOffset: -16}
}

// textReader reads code bytes of an ELF file a chunk at a time: the
// prologue check reads one byte per function, in address order.
type textReader struct {
	f     *elf.File
	base  uint64
	chunk []byte
}

func newTextReader(f *elf.File) *textReader { return &textReader{f: f} }

func (r *textReader) byteAt(addr uint64) (byte, bool) {
	if addr >= r.base && addr-r.base < uint64(len(r.chunk)) {
		return r.chunk[addr-r.base], true
	}
	const chunk = 64 << 10
	for _, s := range r.f.Sections {
		if s.Flags&elf.SHF_EXECINSTR == 0 || s.Type == elf.SHT_NOBITS || addr < s.Addr || addr-s.Addr >= s.Size {
			continue
		}
		off := addr - s.Addr
		n := min(uint64(chunk), s.Size-off)
		b := make([]byte, n)
		if _, err := s.ReadAt(b, int64(off)); err != nil {
			return 0, false
		}
		r.base, r.chunk = addr, b
		return b[0], true
	}
	return 0, false
}
