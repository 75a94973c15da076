package testutil

import (
	"encoding/binary"
	"os"
	"testing"
)

// FixPerfData clears PERF_RECORD_MISC_MMAP_BUILD_ID on the MMAP2 records of
// the perf.data file at path that hold a device and inode, not a build ID.
// A 6.18 kernel build seen here sets the bit on every MMAP2 record, build
// IDs asked for or not; perf 6.1 then reads the device's major (254) as the
// build ID's size and aborts ("assertion failed at util/build-id.c:1010",
// "stack smashing detected") in perf record's build-ID pass and in perf
// script. Record with --no-buildid, then call this before perf script: the
// records are as a correct kernel writes them, and perf reads the binaries
// by path. It returns how many records it fixed.
func FixPerfData(t testing.TB, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const (
		mmap2       = 10      // PERF_RECORD_MMAP2
		miscBuildID = 1 << 14 // PERF_RECORD_MISC_MMAP_BUILD_ID
	)
	le := binary.LittleEndian
	if len(b) < 56 || string(b[:8]) != "PERFILE2" {
		t.Fatalf("%s: not a perf.data file", path)
	}
	off, size := le.Uint64(b[40:]), le.Uint64(b[48:])
	if off > uint64(len(b)) || size > uint64(len(b))-off {
		t.Fatalf("%s: data section %d+%d past its %d bytes", path, off, size, len(b))
	}
	fixed := 0
	for end := off + size; off+8 <= end; {
		typ, misc, n := le.Uint32(b[off:]), le.Uint16(b[off+4:]), uint64(le.Uint16(b[off+6:]))
		if n < 8 || off+n > end {
			break
		}
		// The union after pid, tid, addr, len and pgoff: a build ID's size
		// is at most 20.
		if typ == mmap2 && misc&miscBuildID != 0 && n > 8+32 && b[off+8+32] > 20 {
			le.PutUint16(b[off+4:], misc&^miscBuildID)
			fixed++
		}
		off += n
	}
	if fixed > 0 {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return fixed
}
