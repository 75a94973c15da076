package symbolize

import (
	"debug/elf"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/emberprof/ember/symbolize/objfile"
)

// TestSectionCache: a binary with compressed DWARF symbolizes to the same
// frames with its decompressed sections kept in the section directory, the
// second open decompresses nothing, and a kept file that is not trusted (others
// may write it) or not of the stated size is decompressed again in its place.
func TestSectionCache(t *testing.T) {
	bin, _ := zstdBuild(t)
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := objfile.BuildIDs(ef)
	ef.Close()
	if id == "" {
		t.Fatal("the test binary has no GNU build ID")
	}
	var addrs []uint64
	for _, s := range elfSymbols(t, bin) {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 {
			addrs = append(addrs, s.Value+s.Size/2)
		}
	}
	// open symbolizes addrs and returns the frames and how many sections
	// it decompressed.
	open := func(dir string) ([][]Frame, int64) {
		t.Helper()
		SetSectionCacheDir(dir)
		defer SetSectionCacheDir("")
		before := decompressions.Load()
		f, err := os.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		o, err := NewObject(f, bin, []string{t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		var all [][]Frame
		for _, a := range addrs {
			fr, err := o.Frames(a)
			if err != nil {
				t.Errorf("%#x: %v", a, err)
			}
			all = append(all, fr)
		}
		return all, decompressions.Load() - before
	}
	want, n := open("")
	if n == 0 {
		t.Fatal("no section of the test binary was decompressed")
	}
	dir := filepath.Join(t.TempDir(), "sections")
	for i, c := range []struct {
		what  string
		spoil func(path string)
		want  int64 // sections decompressed
	}{
		{"first run", nil, n},
		{"second run", nil, 0},
		{"a file others may write", func(p string) { os.Chmod(p, 0o666) }, 1},
		{"a file of another size", func(p string) { os.Truncate(p, 7) }, 1},
	} {
		info := filepath.Join(dir, id+".debug_info")
		if c.spoil != nil {
			c.spoil(info)
		}
		got, dec := open(dir)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%d %s: other frames with the section directory:\n%v\nwant\n%v", i, c.what, got, want)
		}
		if dec != c.want {
			t.Errorf("%d %s: %d sections decompressed, want %d", i, c.what, dec, c.want)
		}
		st, err := os.Stat(info)
		if err != nil {
			t.Fatalf("%d %s: %v", i, c.what, err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%d %s: %s has mode %v, want 0600", i, c.what, info, st.Mode().Perm())
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != int(n) {
		t.Errorf("%d files in the section directory, want %d", len(entries), n)
	}
}

// BenchmarkLibcFirstFrame opens the system's libc and symbolizes one address,
// which indexes its separate debug file (compressed on Debian), with the
// sections decompressed each time (fresh) or read from the section
// directory a first open filled (kept).
func BenchmarkLibcFirstFrame(b *testing.B) {
	const libc = "/lib/x86_64-linux-gnu/libc.so.6"
	ef, err := elf.Open(libc)
	if err != nil {
		b.Skip(err)
	}
	syms, _ := ef.DynamicSymbols()
	ef.Close()
	addr := uint64(0)
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 {
			addr = s.Value + s.Size/2
			break
		}
	}
	for _, kept := range []bool{false, true} {
		name := map[bool]string{false: "fresh", true: "kept"}[kept]
		b.Run(name, func(b *testing.B) {
			if kept {
				SetSectionCacheDir(b.TempDir())
				defer SetSectionCacheDir("")
			}
			for i := -1; i < b.N; i++ {
				if i == 0 {
					b.ResetTimer() // the first open filled the directory
				}
				f, err := os.Open(libc)
				if err != nil {
					b.Fatal(err)
				}
				o, err := NewObject(f, libc, []string{"/usr/lib/debug"})
				if err != nil {
					b.Fatal(err)
				}
				if fr, err := o.Frames(addr); err != nil || len(fr) == 0 || fr[0].Line == 0 {
					b.Fatalf("%#x: %v %v (no line: no debug file?)", addr, fr, err)
				}
				o.Close()
				f.Close()
			}
		})
	}
}
