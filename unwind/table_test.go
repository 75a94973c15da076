package unwind

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// ehFrame assembles a .eh_frame with one x86-64 "zR" CIE (pcrel|sdata4 FDE
// addresses, CFA rsp+8, RA at CFA-8) and one FDE for [0x1000, 0x1040) with
// the given instructions. The section is at address 0x2000.
func ehFrame(insns ...byte) []byte {
	cie := []byte{
		0, 0, 0, 0, // CIE id
		1,           // version
		'z', 'R', 0, // augmentation
		1,          // code alignment
		0x78,       // data alignment -8
		16,         // return address register
		1,          // augmentation length
		0x1b,       // FDE encoding: pcrel | sdata4
		0x0c, 7, 8, // DW_CFA_def_cfa rsp+8
		0x90, 1, // DW_CFA_offset r16 at cfa-8
	}
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(len(cie)))
	b = append(b, cie...)
	fdeStart := len(b)
	body := binary.LittleEndian.AppendUint32(nil, uint32(fdeStart+4)) // CIE pointer
	pcField := 0x2000 + fdeStart + 8
	body = binary.LittleEndian.AppendUint32(body, uint32(int32(0x1000-pcField)))
	body = binary.LittleEndian.AppendUint32(body, 0x40)
	body = append(body, 0) // augmentation length
	body = append(body, insns...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	b = append(b, body...)
	return append(b, 0, 0, 0, 0) // terminator
}

func TestBuildTableInstructions(t *testing.T) {
	tab, err := BuildTable(AMD64, Section{Kind: EHFrame, Data: ehFrame(
		0x41,     // advance 1
		0x0e, 16, // def_cfa_offset 16
		0x86, 2, // rbp at cfa-16
		0x43,    // advance 3
		0x0d, 6, // def_cfa_register rbp
		0x0a,       // remember_state
		0x50,       // advance 16 (to 0x1014)
		0x0c, 7, 8, // def_cfa rsp+8
		0xc6, // restore rbp
		0x41, // advance 1
		0x0b, // restore_state
	), Addr: 0x2000})
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		{PC: 0x1000, CFA: CFASP, CFAOffset: 8, RA: RAOffset, RAOffset: -8},
		{PC: 0x1001, CFA: CFASP, CFAOffset: 16, FP: FPOffset, FPOffset: -16, RA: RAOffset, RAOffset: -8},
		{PC: 0x1004, CFA: CFAFP, CFAOffset: 16, FP: FPOffset, FPOffset: -16, RA: RAOffset, RAOffset: -8},
		{PC: 0x1014, CFA: CFASP, CFAOffset: 8, RA: RAOffset, RAOffset: -8},
		{PC: 0x1015, CFA: CFAFP, CFAOffset: 16, FP: FPOffset, FPOffset: -16, RA: RAOffset, RAOffset: -8},
		{PC: 0x1040, CFA: CFANone},
	}
	if len(tab.Rows) != len(want) {
		t.Fatalf("rows %+v", tab.Rows)
	}
	for i := range want {
		if tab.Rows[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, tab.Rows[i], want[i])
		}
	}
}

func TestBuildTableErrors(t *testing.T) {
	// Bad instructions cost their own FDE: it gets a CFAInvalid row and
	// the table keeps the error, with its offset.
	for _, tt := range []struct {
		name  string
		data  []byte
		inErr string
	}{
		{"unknown-opcode", ehFrame(0x3f), "unknown call frame instruction 0x3f"},
		{"restore-without-remember", ehFrame(0x0b), "no remembered state"},
		{"truncated-operand", ehFrame(0x0e), "past end"},
		{"location-backwards", ehFrame(0x01, 0x00, 0xe0, 0xff, 0xff), "moves back"}, // set_loc to .-0x2000
	} {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := BuildTable(AMD64, Section{Kind: EHFrame, Data: tt.data, Addr: 0x2000})
			if err != nil {
				t.Fatal(err)
			}
			var de *DecodeError
			if tab.Stats.BadFDEs != 1 || len(tab.Errors) != 1 || !errors.As(tab.Errors[0], &de) ||
				!strings.Contains(de.Error(), tt.inErr) {
				t.Fatalf("bad FDEs %d, errors %v; want one DecodeError containing %q", tab.Stats.BadFDEs, tab.Errors, tt.inErr)
			}
			if de.Offset == 0 || de.Offset > uint64(len(tt.data)) {
				t.Errorf("offset %#x outside the %d-byte section", de.Offset, len(tt.data))
			}
			if r, _ := tab.Lookup(0x1020); r.CFA != CFAInvalid {
				t.Errorf("row in the bad FDE: %+v", r)
			}
			if r, _ := tab.Lookup(0x1040); r.CFA != CFANone {
				t.Errorf("row after the bad FDE: %+v", r)
			}
		})
	}
	// A broken entry structure stops the parse: nothing after it can be
	// trusted to start where it seems to.
	data := ehFrame()[:30]
	_, err := BuildTable(AMD64, Section{Kind: EHFrame, Data: data, Addr: 0x2000})
	var de *DecodeError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "past end of section") || de.Offset > uint64(len(data)) {
		t.Errorf("truncated section: %v", err)
	}
	if _, err := BuildTable(Arch(9)); !errors.Is(err, ErrUnsupportedArch) {
		t.Errorf("Arch(9): %v", err)
	}
}

func TestNewTableSentinels(t *testing.T) {
	path := buildBinary(t, "chain-O2-omitfp")
	stripped := filepath.Join(t.TempDir(), "stripped")
	out, err := exec.Command("objcopy", "--remove-section=.eh_frame", "--remove-section=.eh_frame_hdr",
		"--remove-section=.debug_frame", path, stripped).CombinedOutput()
	if err != nil {
		t.Fatalf("objcopy (Debian package binutils): %v\n%s", err, out)
	}
	if _, err := Open(stripped); !errors.Is(err, ErrNoFrameInfo) {
		t.Errorf("binary without CFI: %v, want ErrNoFrameInfo", err)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsGo(f) {
		t.Error("a C program reported as Go")
	}
	goBin := filepath.Join(t.TempDir(), "gobin")
	if out, err := exec.Command("go", "build", "-o", goBin, "./testdata/goarm64/main.go").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	g, err := elf.Open(goBin)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if !IsGo(g) {
		t.Error("a Go program not recognised")
	}
}

// TestDRAPRows checks the stack realignment expressions gcc emits:
// DW_CFA_def_cfa_expression (DW_OP_breg6 (rbp): -32; DW_OP_deref) and
// DW_CFA_expression: r6 (rbp) (DW_OP_breg6 (rbp): 0).
func TestDRAPRows(t *testing.T) {
	tab, err := BuildTable(AMD64, Section{Kind: EHFrame, Data: ehFrame(
		0x45,        // advance 5
		0x0c, 10, 0, // def_cfa r10+0
		0x48,                   // advance 8
		0x10, 6, 2, 0x76, 0x00, // rbp saved at rbp+0
		0x0f, 3, 0x76, 0x60, 0x06, // CFA = *(rbp-32)
		0x48,                      // advance 8
		0x0f, 3, 0x77, 0x60, 0x06, // CFA = *(rsp-32): not compiled
	), Addr: 0x2000})
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		{PC: 0x1000, CFA: CFASP, CFAOffset: 8, RA: RAOffset, RAOffset: -8},
		{PC: 0x1005, CFA: CFAOtherReg},
		{PC: 0x100d, CFA: CFADerefFP, CFAOffset: -32, FP: FPAtFP, FPOffset: 0, RA: RAOffset, RAOffset: -8},
		{PC: 0x1015, CFA: CFAExpression},
		{PC: 0x1040, CFA: CFANone},
	}
	if len(tab.Rows) != len(want) {
		t.Fatalf("rows %+v", tab.Rows)
	}
	for i := range want {
		if tab.Rows[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, tab.Rows[i], want[i])
		}
	}
}

// A map form read back from elsewhere (Compacted) is checked: Encode's own
// is taken whole, and one whose rows name a rule it lacks, or whose pages
// do not cover its rows, is refused.
func TestCompactedChecksMapForm(t *testing.T) {
	tab, err := Open(libcPath(t))
	if err != nil {
		t.Fatal(err)
	}
	e, err := tab.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Compacted(e, tab.Stats, tab.Go, nil)
	if err != nil {
		t.Fatalf("Encode's map form refused: %v", err)
	}
	if ge, _ := got.Encoded(); ge != e || got.Rows != nil || got.Stats != tab.Stats {
		t.Error("Compacted's table is not the map form given")
	}
	badRule := *e
	badRule.Rows = slices.Clone(e.Rows)
	binary.LittleEndian.PutUint16(badRule.Rows[len(badRule.Rows)-2:], uint16(e.NumRules()))
	badPage := *e
	badPage.Pages = slices.Clone(e.Pages)
	binary.LittleEndian.PutUint32(badPage.Pages[4:], 0) // page 0 without rows
	short := *e
	short.Rows = e.Rows[:len(e.Rows)-RowSize]
	for name, bad := range map[string]*Encoded{"rule": &badRule, "page": &badPage, "rows": &short} {
		if _, err := Compacted(bad, tab.Stats, nil, nil); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: a bad map form taken: %v", name, err)
		}
	}
}
