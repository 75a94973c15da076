package symbolize

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/pprof/profile"
	"golang.org/x/sys/unix"

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
// without following the process's symlinks out of its mount namespace: first
// through /proc/PID/map_files/START-LIMIT (which also reaches deleted and
// memfd files while the process lives), then by path inside /proc/PID/root
// with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS).
func OpenInProcess(pid int, path string, start, limit uint64) (*os.File, error) {
	mf := fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, start, limit)
	f, err1 := os.Open(mf)
	if err1 == nil {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			return f, nil
		}
		f.Close()
		err1 = fmt.Errorf("%s: not a regular file", mf)
	}
	path = strings.TrimSuffix(path, " (deleted)")
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("open %q in process %d: %w; not an absolute path", path, pid, err1)
	}
	root, err := os.Open(fmt.Sprintf("/proc/%d/root", pid))
	if err != nil {
		return nil, errors.Join(err1, err)
	}
	defer root.Close()
	fd, err := unix.Openat2(int(root.Fd()), path, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, errors.Join(err1, fmt.Errorf("openat2 %s in /proc/%d/root: %w", path, pid, err))
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("/proc/%d/root%s", pid, path)), nil
}

// ProcessOpener returns an Options.Open for mappings of process pid.
func ProcessOpener(pid int) func(m *profile.Mapping) (*os.File, error) {
	return func(m *profile.Mapping) (*os.File, error) {
		return OpenInProcess(pid, m.File, m.Start, m.Limit)
	}
}
