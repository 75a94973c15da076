// Package leb128 decodes the variable-length integers of DWARF and of the
// unwind sections (.eh_frame, .debug_frame, .debug_info, .debug_line).
//
// It is the one decoder of LEB128 in Ember: unwind's CFI reader and
// symbolize's DWARF reader both call it, so the two parse the same bytes the
// same way. It imports nothing of Ember's and never panics: a number that runs
// off the end of its buffer, or is longer than MaxLen bytes, is reported
// through a non-positive length.
package leb128

// MaxLen is the longest encoding accepted, in bytes. A 64-bit value needs at
// most 10, but assemblers pad numbers whose size must be fixed ahead of
// layout (for example with 0x80 bytes), so a longer encoding of a small value
// is valid; 20 bytes bound the work a hostile buffer can cause.
const MaxLen = 20

// Uint decodes an unsigned LEB128 number at the start of b and returns it
// with the number of bytes it took. n is 0 when b ends inside the number and
// -1 when the number is longer than MaxLen bytes. Bits above the 64th are
// dropped, as readelf and LLVM's decoders do.
func Uint(b []byte) (v uint64, n int) {
	for i := 0; i < len(b); i++ {
		if i == MaxLen {
			return 0, -1
		}
		c := b[i]
		if i < 10 {
			v |= uint64(c&0x7f) << (7 * uint(i))
		}
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// Int decodes a signed LEB128 number at the start of b, sign-extending from
// the last byte's bit 6; n is as for Uint.
func Int(b []byte) (v int64, n int) {
	var shift uint
	for i := 0; i < len(b); i++ {
		if i == MaxLen {
			return 0, -1
		}
		c := b[i]
		if shift < 64 {
			v |= int64(c&0x7f) << shift
		}
		shift += 7
		if c < 0x80 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, i + 1
		}
	}
	return 0, 0
}
