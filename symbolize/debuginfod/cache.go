package debuginfod

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/emberprof/ember/export/cachedir"
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

// isFetched reports whether p is a fetched file (ID/debuginfo or
// ID/executable), not elfutils' own files beside them.
func isFetched(p string) bool {
	k := Kind(filepath.Base(p))
	return k == Debuginfo || k == Executable
}

// trim removes the least recently used fetched files until the cache holds
// at most budget bytes, sparing keep (the file just fetched). It returns the
// bytes left and the number of files removed.
func (c cache) trim(budget int64, keep string) (int64, int) {
	return cachedir.Trim(c.dir, budget, isFetched, keep)
}
