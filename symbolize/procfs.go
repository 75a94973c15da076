package symbolize

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/pprof/profile"
	"golang.org/x/sys/unix"
)

const maxMapsLines = 1 << 20

// ParseMaps reads /proc/PID/maps and returns the file-backed executable
// mappings as profile Mappings (Start, Limit, Offset, File), numbered from 1.
// A " (deleted)" suffix is kept in File, as the kernel writes it.
func ParseMaps(r io.Reader) (out []*profile.Mapping, err error) {
	defer guard("maps", &err)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLineLen)
	for n := 0; sc.Scan(); n++ {
		if n >= maxMapsLines {
			return nil, fmt.Errorf("maps: more than %d lines: %w", maxMapsLines, ErrTooLarge)
		}
		m, exec, err := parseMapsLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("maps: line %d: %w", n+1, err)
		}
		if m == nil || !exec {
			continue
		}
		m.ID = uint64(len(out) + 1)
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("maps: %w: %w", ErrFormat, err)
	}
	return out, nil
}

// parseMapsLine parses "start-limit perms offset dev inode path".
func parseMapsLine(line string) (*profile.Mapping, bool, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return nil, false, nil
	}
	if len(f) < 5 {
		return nil, false, fmt.Errorf("%q: want at least 5 fields: %w", truncate(line, 80), ErrFormat)
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	start, err1 := strconv.ParseUint(lo, 16, 64)
	limit, err2 := strconv.ParseUint(hi, 16, 64)
	off, err3 := strconv.ParseUint(f[2], 16, 64)
	if !ok || err1 != nil || err2 != nil || err3 != nil || limit < start || len(f[1]) != 4 {
		return nil, false, fmt.Errorf("%q: %w", truncate(line, 80), ErrFormat)
	}
	file := ""
	if len(f) >= 6 {
		// The path is everything after the inode field, spaces included.
		idx := 0
		for i := 0; i < 5; i++ {
			j := strings.Index(line[idx:], f[i])
			idx += j + len(f[i])
		}
		file = strings.TrimSpace(line[idx:])
	}
	m := &profile.Mapping{Start: start, Limit: limit, Offset: off, File: file}
	return m, f[1][2] == 'x', nil
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
