package leb128

import (
	"math"
	"testing"
)

// The examples of the DWARF 5 standard (section 7.6, tables 7.7 and 7.8),
// plus the edges of 64 bits and padded encodings.
func TestUint(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want uint64
		n    int
	}{
		{[]byte{2}, 2, 1},
		{[]byte{127}, 127, 1},
		{[]byte{0x80, 1}, 128, 2},
		{[]byte{0x81, 1}, 129, 2},
		{[]byte{0x82, 1}, 130, 2},
		{[]byte{0xb9, 0x64}, 12857, 2},
		{[]byte{0x85, 0x80, 0x80, 0}, 5, 4}, // padded
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1}, math.MaxUint64, 10},
		{[]byte{0x80}, 0, 0}, // ends inside
		{nil, 0, 0},
		{tooLong(), 0, -1},
	} {
		v, n := Uint(c.in)
		if v != c.want || n != c.n {
			t.Errorf("Uint(% x) = %d, %d; want %d, %d", c.in, v, n, c.want, c.n)
		}
	}
}

// tooLong is a zero padded past MaxLen bytes.
func tooLong() []byte {
	b := make([]byte, MaxLen+1)
	for i := range b[:MaxLen] {
		b[i] = 0x80
	}
	return b
}

func TestInt(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		want int64
		n    int
	}{
		{[]byte{2}, 2, 1},
		{[]byte{0x7e}, -2, 1},
		{[]byte{0xff, 0}, 127, 2},
		{[]byte{0x81, 0x7f}, -127, 2},
		{[]byte{0x80, 1}, 128, 2},
		{[]byte{0x80, 0x7f}, -128, 2},
		{[]byte{0x81, 0}, 1, 2},
		{[]byte{0xff, 0x7f}, -1, 2}, // padded -1
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f}, math.MinInt64, 10},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0}, math.MaxInt64, 10},
		{[]byte{0xff}, 0, 0},
		{tooLong(), 0, -1},
	} {
		v, n := Int(c.in)
		if v != c.want || n != c.n {
			t.Errorf("Int(% x) = %d, %d; want %d, %d", c.in, v, n, c.want, c.n)
		}
	}
}

func FuzzUint(f *testing.F) {
	f.Add([]byte{0x85, 0x80, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, n := Uint(b)
		if n > len(b) || n > MaxLen {
			t.Fatalf("Uint(% x) read %d bytes", b, n)
		}
		if n > 0 && n < 10 && v>>(7*uint(n)) != 0 {
			t.Fatalf("Uint(% x) = %#x from %d bytes", b, v, n)
		}
		if _, m := Int(b); m != n {
			t.Fatalf("Int and Uint disagree on the length of % x: %d, %d", b, m, n)
		}
	})
}
