package unwind

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// fakeStack is process memory for synthetic walks: a map of 8-byte words.
type fakeStack map[uint64]uint64

func (s fakeStack) read(addr uint64, n int) ([]byte, error) {
	if n != 8 {
		return nil, fmt.Errorf("read of %d bytes", n)
	}
	v, ok := s[addr]
	if !ok {
		return nil, errors.New("unmapped")
	}
	return binary.LittleEndian.AppendUint64(nil, v), nil
}

// synthetic is a binary loaded at bias 0x10000 with three functions:
//
//	leaf  0x1000..0x1010: frameless, CFA=rsp+8 throughout
//	mid   0x1010..0x1040: push rbp at 0x1011, CFA=rbp+16 from 0x1014
//	outer 0x1040..0x1060: RA undefined (like _start)
//	plt   0x1060..0x1080: the PLT expression, threshold 11
//	gap   0x1080..0x1090: no FDE
//	expr  0x1090..0x10a0: an unsupported expression
//	drap  0x10a0..0x10b0: a realigned frame
//
// Its mapping goes on past the table (0x10b0..0x30000: code with no row, as
// V8's builtins embedded in node), and 0x90000..0x91000 is JIT code walked
// with frame pointers.
//
// With shared, the table is placed by Fill with ShareTable when a walk first
// reaches it, after another table in the flat arrays: a walk must read it
// in its own arrays, not at offset 0 of the flat ones.
func synthetic(t *testing.T, shared ...bool) (*Maps, uint64) {
	rows := []Row{
		{PC: 0x1000, CFA: CFASP, CFAOffset: 8, RA: RAOffset, RAOffset: -8},
		{PC: 0x1010, CFA: CFASP, CFAOffset: 8, RA: RAOffset, RAOffset: -8},
		{PC: 0x1011, CFA: CFASP, CFAOffset: 16, RA: RAOffset, RAOffset: -8, FP: FPOffset, FPOffset: -16},
		{PC: 0x1014, CFA: CFAFP, CFAOffset: 16, RA: RAOffset, RAOffset: -8, FP: FPOffset, FPOffset: -16},
		{PC: 0x1040, CFA: CFASP, CFAOffset: 8, RA: RAUndefined},
		{PC: 0x1060, CFA: CFAPLT, CFAOffset: 8, FPOffset: 11, RA: RAOffset, RAOffset: -8},
		{PC: 0x1080, CFA: CFANone},
		{PC: 0x1090, CFA: CFAExpression},
		{PC: 0x10a0, CFA: CFADerefFP, CFAOffset: -32, FP: FPAtFP, RA: RAOffset, RAOffset: -8},
		{PC: 0x10b0, CFA: CFANone},
	}
	tab := &Table{Arch: AMD64, Rows: mergeRows(slices.Clone(rows))}
	var m Maps
	id, err := m.AddTable(tab)
	if err != nil {
		t.Fatal(err)
	}
	if len(shared) > 0 && shared[0] {
		other := &Table{Arch: AMD64, Rows: mergeRows([]Row{{PC: 0x1000, CFA: CFAExpression}, {PC: 0x1400, CFA: CFANone}})}
		m = Maps{}
		if _, err := m.AddTable(other); err != nil {
			t.Fatal(err)
		}
		e, err := tab.Encode()
		if err != nil {
			t.Fatal(err)
		}
		id = 5
		m.Fill = func(want uint32) {
			if want == id {
				_ = m.ShareTable(id, e)
			}
		}
	}
	const bias = 0x10000
	if err := m.SetProc(1, []Mapping{
		{Start: bias + 0x1000, End: bias + 0x30000, Bias: bias, TableID: id},
		{Start: 0x90000, End: 0x91000, Flags: MappingFramePointers},
	}); err != nil {
		t.Fatal(err)
	}
	return &m, bias
}

func TestUnwindSynthetic(t *testing.T) {
	t.Run("flat", func(t *testing.T) { testUnwindSynthetic(t, false) })
	t.Run("shared", func(t *testing.T) { testUnwindSynthetic(t, true) })
}

func testUnwindSynthetic(t *testing.T, shared bool) {
	m, b := synthetic(t, shared)
	const sp = 0x7000
	tests := []struct {
		name   string
		regs   Regs
		stack  fakeStack
		want   []uint64
		reason Reason
	}{{
		// leaf called from mid (after its prologue), mid called from outer.
		name: "leaf-mid-outer",
		regs: Regs{PC: b + 0x1004, SP: sp, FP: sp + 0x28},
		stack: fakeStack{
			sp:        b + 0x1020, // leaf's RA into mid
			sp + 0x28: sp + 0x100, // mid's saved rbp at CFA-16 (CFA = rbp+16 = sp+0x38)
			sp + 0x30: b + 0x1045, // mid's RA into outer
		},
		want:   []uint64{b + 0x1004, b + 0x1020, b + 0x1045},
		reason: ReasonComplete,
	}, {
		// In mid's prologue after push rbp: CFA = rsp+16.
		name:   "prologue",
		regs:   Regs{PC: b + 0x1012, SP: sp},
		stack:  fakeStack{sp: 0x1234, sp + 8: b + 0x1050},
		want:   []uint64{b + 0x1012, b + 0x1050},
		reason: ReasonComplete,
	}, {
		// PLT entry before the push at byte 11: CFA = rsp+8.
		name:   "plt-before-push",
		regs:   Regs{PC: b + 0x1066, SP: sp},
		stack:  fakeStack{sp: b + 0x1050},
		want:   []uint64{b + 0x1066, b + 0x1050},
		reason: ReasonComplete,
	}, {
		// PLT entry after the push: CFA = rsp+16.
		name:   "plt-after-push",
		regs:   Regs{PC: b + 0x106b, SP: sp},
		stack:  fakeStack{sp: 7, sp + 8: b + 0x1050},
		want:   []uint64{b + 0x106b, b + 0x1050},
		reason: ReasonComplete,
	}, {
		// A realigned (DRAP) frame: CFA = *(rbp-32), rbp saved at [rbp].
		name: "drap",
		regs: Regs{PC: b + 0x10a4, SP: sp, FP: sp + 0x40},
		stack: fakeStack{
			sp + 0x20: sp + 0x88,  // [rbp-32]: the CFA
			sp + 0x40: sp + 0x300, // [rbp]: the caller's rbp
			sp + 0x80: b + 0x1045, // RA at CFA-8
		},
		want:   []uint64{b + 0x10a4, b + 0x1045},
		reason: ReasonComplete,
	}, {
		// Code without a row (no FDE) takes a frame-pointer step, as the
		// BPF walker's fp_step, and the walk goes on with the table in mid.
		name: "gap-frame-pointer-step",
		regs: Regs{PC: b + 0x1084, SP: sp, FP: sp + 0x10},
		stack: fakeStack{
			sp + 0x10: sp + 0x40,  // [fp]: mid's rbp
			sp + 0x18: b + 0x1020, // [fp+8]: RA into mid
			sp + 0x40: sp + 0x100, // mid's saved rbp at CFA-16 (CFA = rbp+16 = sp+0x50)
			sp + 0x48: b + 0x1045, // mid's RA into outer
		},
		want:   []uint64{b + 0x1084, b + 0x1020, b + 0x1045},
		reason: ReasonComplete,
	}, {
		// The same for code in the mapping past the table's pages.
		name:   "past-table-frame-pointer-step",
		regs:   Regs{PC: b + 0x20010, SP: sp, FP: sp + 0x10},
		stack:  fakeStack{sp + 0x10: sp + 0x40, sp + 0x18: b + 0x1020, sp + 0x40: sp + 0x100, sp + 0x48: b + 0x1045},
		want:   []uint64{b + 0x20010, b + 0x1020, b + 0x1045},
		reason: ReasonComplete,
	}, {
		// Without a frame pointer there the walk ends, as at any fp 0.
		name:   "gap-no-frame-pointer",
		regs:   Regs{PC: b + 0x1084, SP: sp},
		want:   []uint64{b + 0x1084},
		reason: ReasonComplete,
	}, {
		// Tabled code called from JIT code called from tabled code: the
		// frameless leaf's row finds its RA in the JIT mapping, a
		// frame-pointer step crosses the JIT frame (rbp untouched by the
		// leaf), and mid's row (CFA = rbp+16) takes it back to outer.
		name: "tables-jit-tables",
		regs: Regs{PC: b + 0x1004, SP: sp, FP: sp + 0x20},
		stack: fakeStack{
			sp:        0x90010,    // leaf's RA into the JIT code
			sp + 0x20: sp + 0x50,  // the JIT frame's [fp]: mid's rbp
			sp + 0x28: b + 0x1020, // its [fp+8]: RA into mid
			sp + 0x50: sp + 0x100, // mid's saved rbp (CFA = sp+0x60)
			sp + 0x58: b + 0x1045, // mid's RA into outer
		},
		want:   []uint64{b + 0x1004, 0x90010, b + 0x1020, b + 0x1045},
		reason: ReasonComplete,
	}, {
		name:   "unsupported",
		regs:   Regs{PC: b + 0x1094, SP: sp},
		want:   []uint64{b + 0x1094},
		reason: ReasonUnsupported,
	}, {
		name:   "no-mapping",
		regs:   Regs{PC: 0x5000, SP: sp},
		want:   []uint64{0x5000},
		reason: ReasonNoMapping,
	}, {
		name:   "read-failed",
		regs:   Regs{PC: b + 0x1004, SP: sp},
		want:   []uint64{b + 0x1004},
		reason: ReasonReadFailed,
	}, {
		// A return address just past the end of the table's code is looked
		// up at PC-1, inside the function that made the call.
		name:   "return-address-at-end",
		regs:   Regs{PC: b + 0x1004, SP: sp},
		stack:  fakeStack{sp: b + 0x1060, sp + 8: 0},
		want:   []uint64{b + 0x1004, b + 0x1060},
		reason: ReasonComplete,
	}, {
		// Frame-pointer mapping: [fp] = next fp, [fp+8] = RA; fp 0 ends.
		name:   "frame-pointer-mapping",
		regs:   Regs{PC: 0x90010, SP: sp, FP: sp + 0x10},
		stack:  fakeStack{sp + 0x10: sp + 0x40, sp + 0x18: 0x90020, sp + 0x40: 0, sp + 0x48: b + 0x1044},
		want:   []uint64{0x90010, 0x90020, b + 0x1044},
		reason: ReasonComplete,
	}, {
		// A loop in the stack (CFA not above SP) is cut, not followed.
		name:   "bad-frame",
		regs:   Regs{PC: 0x90010, SP: sp, FP: sp - 0x10},
		stack:  fakeStack{sp - 0x10: sp - 0x10, sp - 8: 0x90010},
		want:   []uint64{0x90010},
		reason: ReasonBadFrame,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := Unwind(tt.regs, tt.stack.read, m, 1)
			if !slices.Equal(got, tt.want) || reason != tt.reason {
				t.Errorf("got %#x (%v), want %#x (%v)", got, reason, tt.want, tt.reason)
			}
		})
	}
}

func TestUnwindMaxFrames(t *testing.T) {
	m, _ := synthetic(t)
	// Frame pointers that always move up by 16 and return into FP code.
	stack := fakeStack{}
	for i := uint64(0); i < 1000; i++ {
		fp := 0x7000 + 16*i
		stack[fp] = fp + 16
		stack[fp+8] = 0x90100
	}
	got, reason := Unwind(Regs{PC: 0x90010, SP: 0x7000, FP: 0x7000}, stack.read, m, 1)
	if len(got) != MaxFrames || reason != ReasonMaxFrames {
		t.Errorf("%d frames, %v; want %d, %v", len(got), reason, MaxFrames, ReasonMaxFrames)
	}
}

// checkEncoding loads tab into Maps and checks that the encoded lookup gives
// the same rules as Table.Lookup at every row's PC, the byte before it, and
// every page boundary.
func checkEncoding(t testing.TB, tab *Table) {
	t.Helper()
	var m Maps
	id, err := m.AddTable(tab)
	if err != nil {
		t.Fatal(err)
	}
	var ti TableInfo
	if err := ti.UnmarshalBinary(m.Tables[id*TableInfoSize : (id+1)*TableInfoSize]); err != nil {
		t.Fatal(err)
	}
	check := func(pc uint64) {
		want, ok := tab.Lookup(pc)
		if !ok {
			want = Row{CFA: CFANone}
		}
		want.PC = 0
		got, reason := lookupRow(m.arrays(id), ti, pc)
		if reason == ReasonNoRow {
			got, reason = Row{CFA: CFANone}, ReasonComplete
		}
		if reason != ReasonComplete || got != want {
			t.Fatalf("at %#x: encoded lookup %+v (%v), table %+v", pc, got, reason, want)
		}
	}
	for _, r := range tab.Rows {
		check(r.PC)
		check(r.PC - 1)
	}
	// Counted in pages, not compared by address: the last page may end at 2^64.
	for p := uint64(0); p <= uint64(ti.NumPages); p++ {
		pc := ti.Base + p<<PageShift
		check(pc)
		check(pc - 1)
	}
}

// TestEncodeTopPage checks a table whose last page ends at 2^64 (the fuzzer
// found one: a page end computed as start+1<<PageShift wrapped to 0 and the
// page's own rows were never encoded).
func TestEncodeTopPage(t *testing.T) {
	rows := []Row{
		{PC: 0xfffffffffffe8000, CFA: CFASP, CFAOffset: 8, RA: RAOffset, RAOffset: -8},
		{PC: 0xffffffffffff51ac, CFA: CFAInvalid},
		{PC: 0xfffffffffffffff0, CFA: CFANone},
	}
	checkEncoding(t, &Table{Arch: AMD64, Rows: rows})
}

func TestEncode(t *testing.T) {
	rows := []Row{
		{PC: 0x400010, CFA: CFASP, CFAOffset: 8, RA: RAOffset, RAOffset: -8},
		{PC: 0x400011, CFA: CFAFP, CFAOffset: 16, FP: FPOffset, FPOffset: -16, RA: RAOffset, RAOffset: -8},
		{PC: 0x400020, CFA: CFAPLT, CFAOffset: 8, FPOffset: 11, RA: RAOffset, RAOffset: -8},
		{PC: 0x400030, CFA: CFASP, CFAOffset: 1 << 20, FP: FPUndefined, RA: RAUndefined},
		{PC: 0x400040, CFA: CFASP, CFAOffset: 16, RA: RALink},
		{PC: 0x400050, CFA: CFAFP, CFAOffset: 32, FP: FPOffset, FPOffset: -32, RA: RAOffset, RAOffset: -1712},
		{PC: 0x400058, CFA: CFASP, CFAOffset: -1 << 23, RA: RAOffset, RAOffset: -8},
		{PC: 0x40005c, CFA: CFADerefFP, CFAOffset: 1<<23 - 1, FP: FPAtFP, FPOffset: -8, RA: RAOffset, RAOffset: -8},
		{PC: 0x400060, CFA: CFANone},
		{PC: 0x430000, CFA: CFASP, CFAOffset: 8, RA: RAOffset, RAOffset: -8}, // a page with no row of its own follows
		{PC: 0x450004, CFA: CFANone},
	}
	tab := &Table{Arch: AMD64, Rows: rows}
	e, err := tab.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// Pages 0x40, 0x41 (none), 0x42 (none), 0x43, 0x44 (covered from 0x43),
	// 0x45: rows plus a synthetic first row on each page without one at 0.
	if e.Base != 0x400000 || e.NumPages() != 6 || e.NumRows() != len(rows)+1+4 || e.NumRules() != 9 {
		t.Errorf("base %#x, %d pages, %d rows, %d rules", e.Base, e.NumPages(), e.NumRows(), e.NumRules())
	}
	// Byte-exact: the rule of the second row (struct unwind_rule) and the
	// row itself (struct unwind_row: offset 0x11 in page 0, rule 2 after
	// the synthetic CFANone rule 0 and the rsp+8 rule 1).
	wantRule := []byte{byte(CFAFP) | byte(FPOffset)<<4 | byte(RAOffset)<<6, 16, 0, 0, 0xf0, 0xff, 0xf8, 0xff}
	if got := e.Rules[2*RuleSize : 3*RuleSize]; !slices.Equal(got, wantRule) {
		t.Errorf("rule 2 encodes as % x, want % x", got, wantRule)
	}
	if got, want := e.Rows[2*RowSize:3*RowSize], []byte{0x11, 0, 2, 0}; !slices.Equal(got, want) {
		t.Errorf("row 2 encodes as % x, want % x", got, want)
	}
	checkEncoding(t, tab)

	tab.Rows = append(tab.Rows, Row{PC: 0x400000 + 1<<32})
	if _, err := tab.Encode(); !errors.Is(err, ErrFormat) {
		t.Errorf("table spanning 4 GiB: %v, want ErrFormat", err)
	}
}

// TestEncodeLibc checks the encoding of a real table and reports its size.
func TestEncodeLibc(t *testing.T) {
	tab, err := Open(libcPath(t))
	if err != nil {
		t.Fatal(err)
	}
	checkEncoding(t, tab)
	e, _ := tab.Encode()
	t.Logf("libc: %d rows (%d in the table), %d rules, %d pages: %d bytes", e.NumRows(), len(tab.Rows), e.NumRules(), e.NumPages(), e.Size())
}

func TestEncodeProc(t *testing.T) {
	ms := []Mapping{
		{Start: 0x2000, End: 0x3000, Bias: 0x1000, TableID: 7},
		{Start: 0x1000, End: 0x2000, Flags: MappingFramePointers},
	}
	b, err := EncodeProc(ms)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != ProcSize || binary.LittleEndian.Uint32(b) != 2 {
		t.Fatalf("%d bytes, count %d", len(b), binary.LittleEndian.Uint32(b))
	}
	if got := decodeMapping(b, 0); got != ms[1] {
		t.Errorf("mapping 0 = %+v, want the lower one %+v", got, ms[1])
	}
	for _, addr := range []uint64{0xfff, 0x1000, 0x1fff, 0x2000, 0x2fff, 0x3000} {
		m, ok := findMapping(b, addr)
		wantOK := addr >= 0x1000 && addr < 0x3000
		if ok != wantOK || (ok && (addr < m.Start || addr >= m.End)) {
			t.Errorf("findMapping(%#x) = %+v, %v", addr, m, ok)
		}
	}
	if _, err := EncodeProc([]Mapping{{Start: 1, End: 10}, {Start: 5, End: 20}}); !errors.Is(err, ErrFormat) {
		t.Errorf("overlap: %v", err)
	}
	if _, err := EncodeProc(make([]Mapping, MaxMappings+1)); !errors.Is(err, ErrFormat) {
		t.Errorf("too many: %v", err)
	}
	ti := TableInfo{Base: 0x1122334455667788, FirstRow: 9, NumRows: 10, FirstPage: 11, NumPages: 12, FirstRule: 13, NumRules: 14, Arch: ARM64}
	tb, _ := ti.MarshalBinary()
	var back TableInfo
	if len(tb) != TableInfoSize || back.UnmarshalBinary(tb) != nil || back != ti {
		t.Errorf("TableInfo round trip: % x -> %+v", tb, back)
	}
}

// TestPLTRows checks that the lazy-binding PLT of a gcc-built binary is
// described by CFAPLT rows, with the threshold binutils uses.
func TestPLTRows(t *testing.T) {
	path := buildBinary(t, "chain-O2-omitfp")
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plt := f.Section(".plt")
	if plt == nil {
		t.Fatal("no .plt")
	}
	tab, err := NewTable(f)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := tab.Lookup(plt.Addr + 16) // first entry after PLT0
	if !ok || r.CFA != CFAPLT || r.CFAOffset != 8 || r.FPOffset != 11 {
		t.Errorf("row at .plt+16 is %+v, want CFAPLT rsp+8, threshold 11", r)
	}
}

// TestUnwindARM64 walks an arm64-shaped stack: a leaf whose return address
// is still in x30, called by a function that saved x29 and x30 with
// "stp x29, x30, [sp, #-32]!; mov x29, sp" (CFA = x29+32).
func TestUnwindARM64(t *testing.T) {
	tab := &Table{Arch: ARM64, Rows: []Row{
		{PC: 0x1000, CFA: CFASP, CFAOffset: 0, RA: RALink},                                                // leaf
		{PC: 0x1010, CFA: CFASP, CFAOffset: 0, RA: RALink},                                                // caller entry
		{PC: 0x1014, CFA: CFAFP, CFAOffset: 32, FP: FPOffset, FPOffset: -32, RA: RAOffset, RAOffset: -24}, // after the prologue
		{PC: 0x1040, CFA: CFASP, RA: RAUndefined},                                                         // outermost
		{PC: 0x1050, CFA: CFANone},
	}}
	var m Maps
	id, err := m.AddTable(tab)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetProc(1, []Mapping{{Start: 0x1000, End: 0x1050, TableID: id}}); err != nil {
		t.Fatal(err)
	}
	const sp = 0x7000
	stack := fakeStack{
		sp:     0x7100, // caller's saved x29 at CFA-32 (CFA = x29+32 = sp+32)
		sp + 8: 0x1044, // caller's saved x30 at CFA-24
	}
	got, reason := Unwind(Regs{PC: 0x1004, SP: sp, FP: sp, LR: 0x1020}, stack.read, &m, 1)
	want := []uint64{0x1004, 0x1020, 0x1044}
	if !slices.Equal(got, want) || reason != ReasonComplete {
		t.Errorf("got %#x (%v), want %#x (complete)", got, reason, want)
	}
	// The link register holds only the leaf's return address: a non-leaf
	// frame whose row says RA-in-LR is a broken stack, not a guess.
	stack[sp+8] = 0x1004
	got, reason = Unwind(Regs{PC: 0x1004, SP: sp, FP: sp, LR: 0x1020}, stack.read, &m, 1)
	if reason != ReasonBadFrame || len(got) != 3 {
		t.Errorf("got %#x (%v), want 3 frames and bad-frame", got, reason)
	}
}

// TestCompactKeepsMapForm: a compacted table (what the tracer caches) keeps
// its map form byte for byte, drops its rows, and counts a fraction of its
// former memory against a cache's budget.
func TestCompactKeepsMapForm(t *testing.T) {
	tab, err := Open(libcPath(t))
	if err != nil {
		t.Fatal(err)
	}
	want, err := tab.Encode()
	if err != nil {
		t.Fatal(err)
	}
	before := tab.memSize()
	if err := tab.Compact(); err != nil {
		t.Fatal(err)
	}
	got, err := tab.Encoded()
	if err != nil {
		t.Fatal(err)
	}
	if tab.Rows != nil {
		t.Errorf("%d rows kept after Compact", len(tab.Rows))
	}
	if got.Base != want.Base || got.Arch != want.Arch || !slices.Equal(got.Rows, want.Rows) || !slices.Equal(got.Rules, want.Rules) || !slices.Equal(got.Pages, want.Pages) {
		t.Error("the compacted table's map form differs from Encode's")
	}
	after := tab.memSize()
	t.Logf("libc's table: %d bytes as rows and map form, %d compacted", before+int64(want.Size()), after)
	if after*4 > before {
		t.Errorf("compacted table counts %d bytes, rows alone took %d", after, before)
	}
}
