package debuginfod

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
)

// note returns a GNU build ID note with desc.
func note(desc []byte) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, [3]uint32{4, uint32(len(desc)), ntGNUBuildID})
	b.WriteString("GNU\x00")
	b.Write(desc)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

func TestGNUBuildID(t *testing.T) {
	other := []byte{4, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 'G', 'N', 'U', 0, 1, 2, 3, 4}
	b := append(other, note([]byte{0xde, 0xad, 0xbe, 0xef, 0x01})...)
	if id, ok := gnuBuildID(b, binary.LittleEndian); !ok || id != "deadbeef01" {
		t.Fatalf("gnuBuildID = %q, %v", id, ok)
	}
	if _, ok := gnuBuildID(b[:len(b)-4], binary.LittleEndian); ok {
		t.Fatalf("a cut note was read")
	}
}

func TestValidBuildID(t *testing.T) {
	for id, want := range map[string]bool{"ab": true, "0123456789abcdef": true, "a": false, "AB": false,
		"../etc": false, "abc": false, "": false} {
		if ValidBuildID(id) != want {
			t.Errorf("ValidBuildID(%q) = %v", id, !want)
		}
	}
}

// FuzzBuildID: whatever a server answers, reading its build ID returns an
// ID or an error, never a panic, and an ID is one the cache can use as a
// directory name.
func FuzzBuildID(f *testing.F) {
	if exe, err := os.Executable(); err == nil {
		if b, err := os.ReadFile(exe); err == nil && len(b) > 8192 {
			f.Add(b[:8192])
		}
	}
	f.Add(note([]byte{1, 2, 3, 4}))
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if id, err := BuildID(bytes.NewReader(data)); err == nil && !ValidBuildID(id) && len(id) <= 128 {
			t.Fatalf("BuildID returned %q", id)
		}
		for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			if id, ok := gnuBuildID(data, bo); ok && len(id)%2 != 0 {
				t.Fatalf("gnuBuildID returned %q", id)
			}
		}
	})
}
