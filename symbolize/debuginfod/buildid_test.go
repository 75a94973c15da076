package debuginfod

import (
	"bytes"
	"os"
	"testing"
)

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
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if id, err := BuildID(bytes.NewReader(data)); err == nil && !ValidBuildID(id) && len(id) <= 128 {
			t.Fatalf("BuildID returned %q", id)
		}
	})
}
