package gopclntab

import (
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzPCValues decodes the function table and every pc-value table of
// arbitrary bytes: no panic, errors wrapped, runs in order, and the lookup
// agrees with the walk it is built on.
func FuzzPCValues(f *testing.F) {
	f.Add(testTable(), uint64(0x401000))
	f.Add([]byte{0xf1, 0xff, 0xff, 0xff, 0, 0, 1, 8}, uint64(0))
	f.Fuzz(func(t *testing.T, tab []byte, text uint64) {
		pt, err := Parse(tab, binary.LittleEndian)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrOldGo) {
				t.Fatalf("unwrapped error %v", err)
			}
			return
		}
		pt.TextStart = text
		for i := 0; i < pt.NFunc && i < 64; i++ {
			fn, err := pt.Func(i)
			if err != nil {
				continue
			}
			pt.Name(fn.NameOff)
			pt.File(fn.CUOffset, 0)
			for _, off := range []uint32{fn.PCSP, fn.PCFile, fn.PCLn} {
				last := fn.Entry
				n := 0
				_ = pt.PCValues(off, fn.Entry, fn.End, func(lo, hi uint64, v int64) bool {
					if lo != last || hi < lo {
						t.Fatalf("run [%#x, %#x) after %#x", lo, hi, last)
					}
					last = hi
					if hi > lo && n < 8 {
						n++
						if got, ok := pt.PCValue(off, fn.Entry, lo); !ok || got != v {
							t.Fatalf("PCValue(%#x) = %d, %v; run says %d", lo, got, ok, v)
						}
					}
					return true
				})
			}
		}
	})
}
