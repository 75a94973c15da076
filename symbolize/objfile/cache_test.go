package objfile

import (
	"debug/elf"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/emberprof/ember/internal/testutil"
)

// idOf is the FileID a mapping of path would give (st_dev, st_ino).
func idOf(t *testing.T, path string) FileID {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return FileID{uint64(st.Dev), st.Ino}
}

// copyFile copies src to dst (another inode with the same contents).
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// A file is opened and parsed once for every user: the second Open of its
// FileID opens nothing, a second path to the same binary (a copy, as a
// container's layer has) is closed again and shares the entry, and the
// build IDs are the ones BuildIDs reads from the ELF.
func TestCacheOpensAndParsesOnce(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := NewCache(4)
	defer c.Close()
	opens := 0
	open := func(p string) func() (*os.File, error) {
		return func() (*os.File, error) { opens++; return os.Open(p) }
	}
	a, err := c.Open(idOf(t, exe), exe, open(exe))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Open(idOf(t, exe), exe, open(exe))
	if err != nil {
		t.Fatal(err)
	}
	if a != b || opens != 1 {
		t.Fatalf("second Open: same entry %v, %d opens; want the same entry and 1 open", a == b, opens)
	}
	ef, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	gnu, goid := BuildIDs(ef)
	ef.Close()
	if g, o := a.BuildIDs(); g != gnu || o != goid || goid == "" {
		t.Errorf("BuildIDs %q %q, want %q %q (a Go test binary has a Go build ID)", g, o, gnu, goid)
	}
	if a.Key() != Key(gnu, a.Stat()) {
		t.Errorf("Key %q, want %q", a.Key(), Key(gnu, a.Stat()))
	}
	if f, err := a.ELF(); err != nil || f.Section(".gopclntab") == nil && f.Section(".data.rel.ro.gopclntab") == nil {
		t.Errorf("ELF: %v, no pclntab section", err)
	}

	if s := c.Stats(); s.Parsed != 1 || s.Files != 1 {
		t.Errorf("stats %+v: want 1 file parsed and open", s)
	}
	a.Release()
	b.Release()
}

// Two paths to one binary (a copy, as a container's layer and the host
// have) share one entry by build ID: the second file is opened, found to be
// the first, and closed again; its FileID names the entry from then on.
func TestCacheSharesByBuildID(t *testing.T) {
	bin := testutil.BuildC(t, filepath.Join(t.TempDir(), "chain"), []string{"-O2", "-Wl,--build-id=sha1"}, "unwind/chain.c")
	c := NewCache(0)
	defer c.Close()
	a, err := c.Open(idOf(t, bin), bin, func() (*os.File, error) { return os.Open(bin) })
	if err != nil {
		t.Fatal(err)
	}
	if gnu, _ := a.BuildIDs(); gnu == "" || a.Key() != BuildIDKey(gnu) {
		t.Fatalf("build ID %q, key %q", gnu, a.Key())
	}
	cp := filepath.Join(t.TempDir(), "copy")
	copyFile(t, bin, cp)
	d, err := c.Open(idOf(t, cp), cp, func() (*os.File, error) { return os.Open(cp) })
	if err != nil {
		t.Fatal(err)
	}
	if d != a {
		t.Errorf("a copy of a binary (same build ID) got an entry of its own")
	}
	d.Release()
	if e, ok := c.Lookup(idOf(t, cp)); !ok || e != a {
		t.Errorf("Lookup of the copy's FileID: %v, want the binary's entry without an open", ok)
	} else {
		e.Release()
	}
	if s := c.Stats(); s.Parsed != 1 || s.Files != 1 || s.Shared != 1 {
		t.Errorf("stats %+v: want 1 file parsed and open, 1 shared", s)
	}
	a.Release()
}

// Released files wait in the idle list, are found there without an open,
// and the least recently released is closed past the cache's bound; a held
// file is never closed.
func TestCacheIdleBound(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for _, n := range []string{"a", "b", "c"} {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte("not an ELF file, "+n), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	c := NewCache(1)
	defer c.Close()
	var files []*File
	for _, p := range paths {
		f, err := c.Open(idOf(t, p), p, func() (*os.File, error) { return os.Open(p) })
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ELF(); err == nil {
			t.Errorf("%s: parsed as ELF", p)
		}
		files = append(files, f)
	}
	held := files[2]
	files[0].Release()
	files[1].Release() // a goes: one idle file at most
	if _, ok := c.Lookup(idOf(t, paths[0])); ok {
		t.Errorf("the least recently released file is still open past the bound")
	}
	f, ok := c.Lookup(idOf(t, paths[1]))
	if !ok {
		t.Fatalf("the idle file was closed")
	}
	f.Release()
	if s := c.Stats(); s.Files != 2 || s.Idle != 1 {
		t.Errorf("stats %+v: want 2 open, 1 idle", s)
	}
	buf := make([]byte, 3)
	if _, err := held.OS().ReadAt(buf, 0); err != nil || string(buf) != "not" {
		t.Errorf("the held file reads %q, %v", buf, err)
	}
	held.Release()
}

// A file rewritten in place (same inode, new size and time) is not served
// from the cache: Lookup misses, and its holders keep the old entry.
func TestCacheFileChangedInPlace(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("first contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := NewCache(0)
	defer c.Close()
	id := idOf(t, p)
	a, err := c.Open(id, p, func() (*os.File, error) { return os.Open(p) })
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("second, longer contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
	if f, ok := c.Lookup(id); ok {
		f.Release()
		t.Fatalf("Lookup served a file rewritten since it was opened")
	}
	b, err := c.Open(id, p, func() (*os.File, error) { return os.Open(p) })
	if err != nil {
		t.Fatal(err)
	}
	if a == b || a.Key() == b.Key() {
		t.Errorf("the rewritten file shares the old entry (key %s)", b.Key())
	}
	a.Release()
	b.Release()
}
