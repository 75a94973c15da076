// Package atomicfile is Ember's one way of writing a file whole: profiles,
// the file sink's rotated files, the tracer's cached decisions and tables,
// and debug files fetched from debuginfod all go through WriteTemp and a
// rename (or link) into place. A reader never sees half a file and a crash
// leaves no empty file behind the name: the data is synced before the name
// points at it. It imports nothing of Ember's, so every side can use it.
package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteTemp has write fill a new temporary file in dir (os.CreateTemp's
// pattern), which gets mode perm and is synced to disk and closed; it returns
// the file's name and size, for the caller to check and then rename or link
// into place. On error nothing is left.
func WriteTemp(dir, pattern string, perm os.FileMode, write func(io.Writer) error) (string, int64, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", 0, err
	}
	err = write(f)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	var size int64
	if err == nil {
		var info os.FileInfo
		if info, err = f.Stat(); err == nil {
			size = info.Size()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", 0, err
	}
	return f.Name(), size, nil
}

// Write writes path whole: through WriteTemp in path's directory, renamed
// into place once synced.
func Write(path string, perm os.FileMode, write func(io.Writer) error) error {
	tmp, _, err := WriteTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*", perm, write)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
