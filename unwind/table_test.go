package unwind

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"os/exec"
	"path/filepath"
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
	tests := []struct {
		name  string
		data  []byte
		inErr string
	}{
		{"unknown-opcode", ehFrame(0x3f), "unknown call frame instruction 0x3f"},
		{"restore-without-remember", ehFrame(0x0b), "no remembered state"},
		{"truncated-operand", ehFrame(0x0e), "past end"},
		{"location-backwards", ehFrame(0x01, 0x00, 0xe0, 0xff, 0xff), "moves back"}, // set_loc to .-0x2000
		{"length-past-end", ehFrame()[:30], "past end of section"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := BuildTable(AMD64, Section{Kind: EHFrame, Data: tt.data, Addr: 0x2000})
			var de *DecodeError
			if !errors.As(err, &de) || !strings.Contains(err.Error(), tt.inErr) {
				t.Fatalf("error %v, want a DecodeError containing %q", err, tt.inErr)
			}
			if de.Offset == 0 || de.Offset > uint64(len(tt.data)) {
				t.Errorf("offset %#x outside the %d-byte section", de.Offset, len(tt.data))
			}
		})
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
