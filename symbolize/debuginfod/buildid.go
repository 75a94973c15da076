package debuginfod

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"

	"github.com/emberprof/ember/symbolize/objfile"
)

// ErrInvalid is wrapped by the errors of answers that are not what was asked
// for: not ELF, or ELF with another build ID (or none).
var ErrInvalid = errors.New("debuginfod: invalid answer")

// ValidBuildID reports whether id can be a GNU build ID as the protocol
// spells it (lower-case hex, an even number of digits, 2 to 128), which also
// makes it safe as a directory name.
func ValidBuildID(id string) bool {
	if len(id) < 2 || len(id) > 128 || len(id)%2 != 0 {
		return false
	}
	for _, c := range []byte(id) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// BuildID returns the GNU build ID of the ELF file r, read as everything in
// Ember reads one (objfile.BuildIDs). An answer from a server is checked with it: a
// truncated or foreign file has no build ID, or another one. It never panics:
// debug/elf can on malformed input, and r comes from the network.
func BuildID(r io.ReaderAt) (id string, err error) {
	defer func() {
		if p := recover(); p != nil {
			id, err = "", fmt.Errorf("%w: malformed ELF: %v", ErrInvalid, p)
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if id, _ := objfile.BuildIDs(f); id != "" {
		return id, nil
	}
	return "", fmt.Errorf("%w: no GNU build ID note", ErrInvalid)
}
