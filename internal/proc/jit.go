package proc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// JITDumpPath is where a JIT runtime writes its jitdump file (perf's
// convention: CPython's -X perf_jit, node --perf-prof), named, as a perf
// map is, by the PID the process sees.
func JITDumpPath(nspid int) string { return fmt.Sprintf("/tmp/jit-%d.dump", nspid) }

// MaxJITDumpBytes bounds a jitdump file opened by its path; it holds each
// function's code besides its name, so it is larger than a perf map.
const MaxJITDumpBytes = 1 << 30

// OpenJIT opens the file that names the JIT code of process pid, and
// returns the path the process knows it by: the jitdump file it maps
// (jit-NSPID.dump, mapped executable so that perf finds it in the
// mappings), which is the very file and is held since it was mapped (Open);
// else its perf map (OpenPerfMap); else a jitdump file at JITDumpPath that
// it does not map (one unmapped already), opened as a perf map is. An error
// that is not fs.ErrNotExist is a file there but refused (a symlink, a
// FIFO, too large): path names it, so that the symbolizer can say why its
// frames have no names. The mapped jitdump comes first because its mapping
// says this process writes it, where a file in /tmp may be left by an
// earlier process with the same PID.
func (t *Table) OpenJIT(pid int) (f *os.File, path string, err error) {
	nspid := pid
	p := t.Get(pid)
	if p != nil && p.NSPID > 0 {
		nspid = p.NSPID
	}
	dump := JITDumpPath(nspid)
	var refused error
	refusedPath := ""
	try := func(path string, f *os.File, err error) bool {
		if err != nil && !errors.Is(err, fs.ErrNotExist) && refused == nil {
			refused, refusedPath = err, path
		}
		return err == nil
	}
	if p != nil {
		for i := range p.Mappings {
			m := &p.Mappings[i]
			if m.Inode == 0 || filepath.Base(strings.TrimSuffix(m.Path, " (deleted)")) != filepath.Base(dump) {
				continue
			}
			path := strings.TrimSuffix(m.Path, " (deleted)")
			if f, err := t.Open(pid, m); try(path, f, err) {
				return f, path, nil
			}
		}
	}
	if f, err := OpenPerfMap(pid, nspid); try(PerfMapPath(nspid), f, err) {
		return f, PerfMapPath(nspid), nil
	}
	if f, err := OpenInRoot(pid, dump, OpenOptions{NoFollow: true, MaxBytes: MaxJITDumpBytes}); try(dump, f, err) {
		return f, dump, nil
	}
	if refused != nil {
		return nil, refusedPath, refused
	}
	return nil, "", fmt.Errorf("process %d: no %s or %s: %w", pid, PerfMapPath(nspid), dump, fs.ErrNotExist)
}
