package symbolize

import (
	"fmt"
	"io"
	"os"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/internal/proc"
)

// ParseMaps reads /proc/PID/maps and returns the executable mappings that
// have a path as profile Mappings (Start, Limit, Offset, File), numbered from
// 1. A " (deleted)" suffix is kept in File, as the kernel writes it. The
// parsing is internal/proc's, the one parser of maps files in Ember.
func ParseMaps(r io.Reader) ([]*profile.Mapping, error) {
	ms, err := proc.ParseMaps(r)
	if err != nil {
		return nil, fmt.Errorf("maps: %w: %w", ErrFormat, err)
	}
	var out []*profile.Mapping
	for _, m := range ms {
		if !m.Executable() || m.Path == "" {
			continue
		}
		out = append(out, &profile.Mapping{ID: uint64(len(out) + 1), Start: m.Start, Limit: m.Limit, Offset: m.Offset, File: m.Path})
	}
	return out, nil
}

// OpenInProcess opens the file mapped at [start, limit) in process pid,
// without following the process's symlinks out of its root, without
// blocking, and only if it is a regular file: through /proc/PID/map_files
// first, then by path inside /proc/PID/root with openat2(RESOLVE_IN_ROOT |
// RESOLVE_NO_MAGICLINKS). It is internal/proc's opener, the one Ember opens
// every file of a process with.
func OpenInProcess(pid int, path string, start, limit uint64) (*os.File, error) {
	return proc.OpenInProcess(pid, path, start, limit)
}

// ProcessOpener returns an Options.Open for mappings of process pid.
func ProcessOpener(pid int) func(m *profile.Mapping) (*os.File, error) {
	return func(m *profile.Mapping) (*os.File, error) {
		return OpenInProcess(pid, m.File, m.Start, m.Limit)
	}
}
