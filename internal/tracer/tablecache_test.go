package tracer

import (
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/emberprof/ember/unwind"
)

// A table kept on disk is the table built: libc's (CFI) and a Go binary's
// (this test's own, from .gopclntab) read back equal, map form, counts and
// errors; a damaged file or one others may write is not used, and the
// table is built again.
func TestTableCacheRoundTrip(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", self} {
		ef, err := elf.Open(bin)
		if err != nil {
			continue
		}
		defer ef.Close()
		t.Run(filepath.Base(bin), func(t *testing.T) {
			dir := t.TempDir()
			key := "build:0123456789abcdef"
			built, err := buildTableIn(dir, key, ef)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "0123456789abcdef")
			read, err := readTableFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(errorStrings(built.Errors), errorStrings(read.Errors)) {
				t.Errorf("errors %v; read back %v", built.Errors, read.Errors)
			}
			built.Errors, read.Errors = nil, nil
			if !reflect.DeepEqual(built, read) {
				t.Errorf("table read back differs: %d rows built, %d read", numRows(built), numRows(read))
			}
			t.Logf("%s: %d rows, %d bytes on disk", bin, numRows(read), fileSize(t, path))

			again, err := buildTableIn(dir, key, ef)
			if err != nil || numRows(again) != numRows(read) {
				t.Fatalf("from disk: %d rows, %v", numRows(again), err)
			}

			b, _ := os.ReadFile(path)
			if err := os.WriteFile(path, b[:len(b)/2], 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := readTableFile(path); err == nil {
				t.Error("a truncated file was read")
			}
			if rebuilt, err := buildTableIn(dir, key, ef); err != nil || numRows(rebuilt) != numRows(read) {
				t.Errorf("rebuilt after damage: %d rows, %v", numRows(rebuilt), err)
			}
			if _, err := readTableFile(path); err != nil {
				t.Errorf("the damaged file was not rewritten: %v", err)
			}
			if err := os.Chmod(path, 0o620); err != nil {
				t.Fatal(err)
			}
			if _, err := readTableFile(path); err == nil {
				t.Error("read a table file others may write")
			}
		})
	}
}

// TestTableVersionInvalidates: tables are kept by table version, not by
// Ember's own build (which every new binary changed, rebuilding every
// table): a new version has a directory of its own and reads no file of
// the old one, which it builds again.
func TestTableVersionInvalidates(t *testing.T) {
	ef, err := elf.Open("/usr/lib/x86_64-linux-gnu/libc.so.6")
	if err != nil {
		self, _ := os.Executable()
		if ef, err = elf.Open(self); err != nil {
			t.Fatal(err)
		}
	}
	defer ef.Close()
	defer func(v uint32) { tableVersion = v }(tableVersion)
	root := t.TempDir()
	key := "build:0123456789abcdef"
	oldDir := tableDirIn(root)
	if _, err := buildTableIn(oldDir, key, ef); err != nil {
		t.Fatal(err)
	}
	oldPath := filepath.Join(oldDir, "0123456789abcdef")
	if _, err := readTableFile(oldPath); err != nil {
		t.Fatalf("version %d's file: %v", tableVersion, err)
	}

	tableVersion++
	if _, err := readTableFile(oldPath); err == nil {
		t.Errorf("version %d read version %d's file", tableVersion, tableVersion-1)
	}
	newDir := tableDirIn(root)
	if newDir == oldDir {
		t.Fatalf("versions %d and %d share %s", tableVersion-1, tableVersion, newDir)
	}
	newPath := filepath.Join(newDir, "0123456789abcdef")
	if _, err := os.Stat(newPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("before the new version built it: %v", err)
	}
	if _, err := buildTableIn(newDir, key, ef); err != nil {
		t.Fatal(err)
	}
	if _, err := readTableFile(newPath); err != nil {
		t.Errorf("version %d's table was not built and kept: %v", tableVersion, err)
	}
}

// numRows is the number of rows of a table in map form.
func numRows(t *unwind.Table) int {
	if t == nil {
		return -1
	}
	e, err := t.Encoded()
	if err != nil {
		return -1
	}
	return e.NumRows()
}

func errorStrings(errs []error) []string {
	var s []string
	for _, e := range errs {
		s = append(s, e.Error())
	}
	return s
}

func fileSize(t *testing.T, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// BenchmarkTableFromDisk: building a library's unwind table from its
// .eh_frame against reading the table kept on disk by an earlier run
// (page cache warm), for libc and the largest library at hand.
func BenchmarkTableFromDisk(b *testing.B) {
	for _, bin := range []string{"/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1"} {
		ef, err := elf.Open(bin)
		if err != nil {
			continue
		}
		defer ef.Close()
		dir := b.TempDir()
		b.Run(filepath.Base(bin)+"/build", func(b *testing.B) {
			for b.Loop() {
				if _, err := buildTableIn("", "build:x", ef); err != nil {
					b.Fatal(err)
				}
			}
		})
		if _, err := buildTableIn(dir, "build:x", ef); err != nil {
			b.Fatal(err)
		}
		b.Run(filepath.Base(bin)+"/disk", func(b *testing.B) {
			for b.Loop() {
				if _, err := readTableFile(filepath.Join(dir, "x")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
