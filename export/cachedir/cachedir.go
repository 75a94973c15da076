// Package cachedir keeps a directory of cache files within a byte budget,
// the least recently used out first. Ember keeps four such caches between
// runs (unwind tables by build ID, decompressed debug sections, the core
// kernel's symbols by boot, files fetched from debuginfod); this is the one
// way they are trimmed.
//
// It imports nothing of Ember's: the tracer, the symbolizer and the
// debuginfod client all use it.
package cachedir

import (
	"cmp"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// File is one cached file.
type File struct {
	Path string
	Size int64
	// Used is when the file was last read where the file system records
	// it (atime), else when it was written.
	Used time.Time
}

// Scan lists the regular, non-empty files under root, at any depth, that
// want accepts (nil: all), and their total size. A root that cannot be read
// has none.
func Scan(root string, want func(path string) bool) ([]File, int64) {
	var files []File
	var total int64
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || want != nil && !want(p) {
			return nil
		}
		st, err := os.Stat(p)
		if err != nil || st.Size() == 0 {
			return nil
		}
		used := st.ModTime()
		if s, ok := st.Sys().(*syscall.Stat_t); ok {
			if at := time.Unix(s.Atim.Sec, s.Atim.Nsec); at.After(used) {
				used = at
			}
		}
		files = append(files, File{Path: p, Size: st.Size(), Used: used})
		total += st.Size()
		return nil
	})
	return files, total
}

// Trim removes the least recently used files under root that want accepts
// until they take at most budget bytes, never spare (the file just written).
// A directory a removal leaves empty goes too, root excepted. It returns
// the bytes left and the number of files removed. A file a running process
// has mapped stays readable to it.
func Trim(root string, budget int64, want func(path string) bool, spare string) (int64, int) {
	files, total := Scan(root, want)
	if total <= budget {
		return total, 0
	}
	slices.SortFunc(files, func(a, b File) int { return cmp.Compare(a.Used.UnixNano(), b.Used.UnixNano()) })
	n := 0
	for _, f := range files {
		if total <= budget {
			break
		}
		if f.Path == spare {
			continue
		}
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if dir := filepath.Dir(f.Path); filepath.Clean(dir) != filepath.Clean(root) {
			_ = os.Remove(dir) // only if now empty
		}
		total -= f.Size
		n++
	}
	return total, n
}
