package gopclntab

import (
	"encoding/binary"
	"errors"
	"testing"
)

// testTable is a pclntab with two functions: f at text+0 (0x20 bytes) and
// g at text+0x20 (0x10 bytes). f's pcsp table: 0 for 1 byte, 8 for 4,
// 40 for 0x1b; g's: 0 for 0x10.
func testTable() []byte {
	bo := binary.LittleEndian
	hdr := make([]byte, 8+8*8)
	bo.PutUint32(hdr, Go120Magic)
	hdr[6], hdr[7] = 1, 8
	names := []byte("main.f\x00main.g\x00")
	pctab := []byte{0,
		// f: from -1, +1 (zig-zag 2) for 1 byte, +8 for 4, +32 for 0x1b, end
		2, 1, 16, 4, 64, 0x1b, 0,
		// g: 0 for 0x10, end
		2, 0x10, 0}
	var pcln []byte
	u32 := func(v uint32) { pcln = bo.AppendUint32(pcln, v) }
	// functab: entry offsets and _func offsets, then the end.
	funcOff := uint32(3 * 8)
	u32(0)
	u32(funcOff)
	u32(0x20)
	u32(funcOff + FuncHeaderSize)
	u32(0x30)
	u32(0)
	for i, f := range []struct{ entry, name, pcsp uint32 }{{0, 0, 1}, {0x20, 7, 8}} {
		h := make([]byte, FuncHeaderSize)
		bo.PutUint32(h, f.entry)
		bo.PutUint32(h[4:], f.name)
		bo.PutUint32(h[16:], f.pcsp)
		if i == 1 {
			h[41] = FlagTopFrame
		}
		pcln = append(pcln, h...)
	}
	off := uint64(len(hdr))
	put := func(i int, v uint64) { bo.PutUint64(hdr[8+i*8:], v) }
	put(0, 2)
	put(3, off) // funcnames
	off += uint64(len(names))
	put(4, off) // cutab (empty)
	put(5, off) // filetab (empty)
	put(6, off) // pctab
	off += uint64(len(pctab))
	put(7, off) // pcln
	b := append(hdr, names...)
	b = append(b, pctab...)
	return append(b, pcln...)
}

func TestPCValues(t *testing.T) {
	pt, err := Parse(testTable(), binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	pt.TextStart = 0x1000
	if pt.NFunc != 2 {
		t.Fatalf("%d functions", pt.NFunc)
	}
	f, err := pt.Func(0)
	if err != nil {
		t.Fatal(err)
	}
	if pt.Name(f.NameOff) != "main.f" || f.Entry != 0x1000 || f.End != 0x1020 {
		t.Fatalf("func 0: %s %+v", pt.Name(f.NameOff), f)
	}
	type run struct {
		lo, hi uint64
		v      int64
	}
	var got []run
	if err := pt.PCValues(f.PCSP, f.Entry, f.End, func(lo, hi uint64, v int64) bool {
		got = append(got, run{lo, hi, v})
		return true
	}); err != nil {
		t.Fatal(err)
	}
	want := []run{{0x1000, 0x1001, 0}, {0x1001, 0x1005, 8}, {0x1005, 0x1020, 40}}
	if len(got) != len(want) {
		t.Fatalf("runs %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("run %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for pc, v := range map[uint64]int64{0x1000: 0, 0x1004: 8, 0x1005: 40, 0x101f: 40} {
		if got, ok := pt.PCValue(f.PCSP, f.Entry, pc); !ok || got != v {
			t.Errorf("PCValue(%#x) = %d, %v; want %d", pc, got, ok, v)
		}
	}
	g, ok, err := pt.FuncAt(0x1025)
	if err != nil || !ok || pt.Name(g.NameOff) != "main.g" || g.Flag != FlagTopFrame {
		t.Errorf("FuncAt(0x1025) = %s %+v %v %v", pt.Name(g.NameOff), g, ok, err)
	}
	if _, ok, _ := pt.FuncAt(0x1030); ok {
		t.Error("FuncAt past the end found a function")
	}
	old := testTable()
	binary.LittleEndian.PutUint32(old, go118Magic)
	if _, err := Parse(old, binary.LittleEndian); !errors.Is(err, ErrOldGo) {
		t.Errorf("Go 1.18 table: %v, want ErrOldGo", err)
	}
	if err := pt.PCValues(0, 0x1000, 0x1020, func(uint64, uint64, int64) bool { return true }); !errors.Is(err, ErrFormat) {
		t.Errorf("table at 0: %v", err)
	}
}
