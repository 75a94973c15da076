package tracer

import (
	"debug/elf"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// A table kept on disk is the table built: libc's (CFI) and a Go binary's
// (this test's own, from .gopclntab) read back equal, rows, counts and
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
				t.Errorf("table read back differs: %d rows built, %d read", len(built.Rows), len(read.Rows))
			}
			t.Logf("%s: %d rows, %d bytes on disk", bin, len(read.Rows), fileSize(t, path))

			again, err := buildTableIn(dir, key, ef)
			if err != nil || len(again.Rows) != len(read.Rows) {
				t.Fatalf("from disk: %d rows, %v", len(again.Rows), err)
			}

			b, _ := os.ReadFile(path)
			if err := os.WriteFile(path, b[:len(b)/2], 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := readTableFile(path); err == nil {
				t.Error("a truncated file was read")
			}
			if rebuilt, err := buildTableIn(dir, key, ef); err != nil || len(rebuilt.Rows) != len(read.Rows) {
				t.Errorf("rebuilt after damage: %d rows, %v", len(rebuilt.Rows), err)
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
