package objfile

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/emberprof/ember/internal/testutil"
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

// gnuNote returns the first GNU build ID of a run of notes, as BuildIDs reads
// each segment.
func gnuNote(b []byte, bo binary.ByteOrder) (id string, ok bool) {
	forEachNote(b, bo, 4, func(name string, typ uint32, desc []byte) {
		if name == "GNU\x00" && typ == ntGNUBuildID && !ok && len(desc) > 0 {
			id, ok = hex.EncodeToString(desc), true
		}
	})
	return id, ok
}

// A build ID note after another note is found; a cut one is not.
func TestNotes(t *testing.T) {
	other := []byte{4, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 'G', 'N', 'U', 0, 1, 2, 3, 4}
	b := append(other, note([]byte{0xde, 0xad, 0xbe, 0xef, 0x01})...)
	if id, ok := gnuNote(b, binary.LittleEndian); !ok || id != "deadbeef01" {
		t.Fatalf("build ID = %q, %v", id, ok)
	}
	if _, ok := gnuNote(b[:len(b)-4], binary.LittleEndian); ok {
		t.Fatalf("a cut note was read")
	}
}

// BuildIDs agrees with readelf on a binary built with a build ID (the test
// the tracer's own section reader had, before the tracer used BuildIDs).
func TestBuildIDMatchesReadelf(t *testing.T) {
	readelf := testutil.RequireTool(t, "readelf")
	bin := testutil.BuildC(t, filepath.Join(t.TempDir(), "chain"), []string{"-O2", "-Wl,--build-id=sha1"}, "unwind/chain.c")
	out := testutil.Run(t, "", readelf, "-n", bin)
	m := regexp.MustCompile(`Build ID: ([0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("readelf shows no build ID:\n%s", out)
	}
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	if got, _ := BuildIDs(ef); got != m[1] {
		t.Errorf("BuildIDs = %q, readelf %q", got, m[1])
	}
}

// FuzzNotes: whatever the bytes, the note walker stops inside them and a
// build ID it returns is whole bytes of hex.
func FuzzNotes(f *testing.F) {
	f.Add(note([]byte{1, 2, 3, 4}))
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, bo := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			if id, ok := gnuNote(data, bo); ok && len(id)%2 != 0 {
				t.Fatalf("build ID %q", id)
			}
		}
	})
}
