package debuginfod

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Kind is what is fetched for a build ID: the separate debug file or the
// executable itself. Its value is both the URL's last element and the cache
// file's name.
type Kind string

const (
	Debuginfo  Kind = "debuginfo"
	Executable Kind = "executable"
)

// defaultCacheMiss is elfutils' default cache_miss_s: how long a negative
// entry stands before a build ID is asked for again.
const defaultCacheMiss = 600 * time.Second

// DefaultCacheDir returns the standard client's cache directory:
// $DEBUGINFOD_CACHE_PATH, else $XDG_CACHE_HOME/debuginfod_client, else
// $HOME/.cache/debuginfod_client (debuginfod-client.c in elfutils).
func DefaultCacheDir() string {
	if d := os.Getenv("DEBUGINFOD_CACHE_PATH"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "debuginfod_client")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "debuginfod_client")
}

// cache is the directory of fetched files, shared with gdb, perf and every
// other libdebuginfod client on the machine.
type cache struct {
	dir string
}

func (c cache) path(id string, k Kind) string { return filepath.Join(c.dir, id, string(k)) }

// cacheMiss reads cache_miss_s, which elfutils' client writes when it first
// creates the cache, so that every client agrees on it.
func (c cache) cacheMiss() time.Duration {
	b, err := os.ReadFile(filepath.Join(c.dir, "cache_miss_s"))
	if err != nil {
		return defaultCacheMiss
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return defaultCacheMiss
	}
	return time.Duration(n) * time.Second
}

// lookup says what the cache holds for (id, k): a file (its path), a
// negative entry that still stands (negative), or nothing.
func (c cache) lookup(id string, k Kind, now time.Time) (path string, negative bool) {
	p := c.path(id, k)
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() {
		return "", false
	}
	if st.Size() > 0 {
		return p, false
	}
	// An empty file is elfutils' negative entry (mode 000); it expires.
	if now.Sub(st.ModTime()) < c.cacheMiss() {
		return "", true
	}
	return "", false
}

// writeNegative records that no server has (id, k), as elfutils does: an
// empty file of mode 000 in the file's place.
func (c cache) writeNegative(id string, k Kind) error {
	if err := os.MkdirAll(filepath.Join(c.dir, id), 0o755); err != nil {
		return err
	}
	p := c.path(id, k)
	_ = os.Remove(p)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// cachedFile is one fetched file found by a scan of the cache.
type cachedFile struct {
	path  string
	size  int64
	atime time.Time
}

// scan lists the cache's debuginfo and executable files.
func (c cache) scan() ([]cachedFile, int64) {
	var files []cachedFile
	var total int64
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, 0
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		for _, k := range []Kind{Debuginfo, Executable} {
			p := filepath.Join(c.dir, e.Name(), string(k))
			st, err := os.Stat(p)
			if err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
				continue
			}
			at := st.ModTime()
			if s, ok := st.Sys().(*syscall.Stat_t); ok {
				at = time.Unix(s.Atim.Sec, s.Atim.Nsec)
			}
			files = append(files, cachedFile{p, st.Size(), at})
			total += st.Size()
		}
	}
	return files, total
}

// trim removes the least recently used files until the cache holds at most
// budget bytes, sparing keep (the file just fetched). It returns the bytes
// left and the number of files removed.
func (c cache) trim(budget int64, keep string) (int64, int) {
	files, total := c.scan()
	if total <= budget {
		return total, 0
	}
	slices.SortFunc(files, func(a, b cachedFile) int { return a.atime.Compare(b.atime) })
	n := 0
	for _, f := range files {
		if total <= budget {
			break
		}
		if f.path == keep {
			continue
		}
		if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		_ = os.Remove(filepath.Dir(f.path)) // only if now empty
		total -= f.size
		n++
	}
	return total, n
}
