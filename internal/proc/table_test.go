package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
)

// A process read again (an exec, a new mapping) while its mappings are being
// opened keeps every file it still maps openable: the symbolizer and the
// unwinder open mappings while the event reader re-reads processes. Before
// the fix, Add closed a file's descriptor before holding it again, and an
// opener in between failed (or, with the number reused, opened another file).
func TestOpenMappingDuringReread(t *testing.T) {
	tab := NewTable()
	defer tab.Close()
	pid := os.Getpid()
	p, err := tab.Add(pid)
	if err != nil {
		t.Fatal(err)
	}
	var files []Mapping
	for _, m := range p.Mappings {
		if m.Inode != 0 {
			files = append(files, m)
		}
	}
	if len(files) == 0 {
		t.Fatal("no file mappings in own process")
	}
	exe, err := os.Stat("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := tab.Add(pid); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var failed int
	var first error
	for i := 0; i < 20000; i++ {
		m := files[i%len(files)]
		f, err := tab.openHeld(&m)
		if err != nil {
			if failed++; first == nil {
				first = err
			}
			continue
		}
		st, err := f.Stat()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if m.Path == p.Exe && !os.SameFile(st, exe) {
			t.Fatalf("opened %s and got another file", m.Path)
		}
	}
	close(stop)
	wg.Wait()
	if failed > 0 {
		t.Errorf("%d of 20000 opens failed while the process was re-read; first: %v", failed, first)
	}
}

// A process's maps read just before it execs name mappings that are gone
// when their files are opened, so it holds no reference to them; its next
// reading (the exec) holds the same files at new addresses. Dropping the
// first reading must not release those: before the fix, release dropped a
// reference for every mapping, held or not, and closed the dynamic loader
// and libc of every launched command that exec'd at the wrong moment, whose
// stacks then lost their unwind tables.
func TestRereadAfterFailedHold(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "42")
	if err := os.MkdirAll(filepath.Join(dir, "map_files"), 0o755); err != nil {
		t.Fatal(err)
	}
	const line = "%s r-xp 00001000 08:01 1234 /usr/lib/ld.so\n"
	writeMaps := func(rng string) {
		if err := os.WriteFile(filepath.Join(dir, "maps"), []byte(fmt.Sprintf(line, rng)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tab := NewTable()
	tab.root = root
	defer tab.Close()

	// Read before the exec: the mapping is gone by the time it is opened.
	writeMaps("7f0000001000-7f0000020000")
	if _, err := tab.Add(42); err != nil {
		t.Fatal(err)
	}
	// Read after the exec: the same file at another address.
	writeMaps("7f1000001000-7f1000020000")
	if err := os.WriteFile(filepath.Join(dir, "map_files", "7f1000001000-7f1000020000"), []byte("ld.so"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := tab.Add(42)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Mappings) != 1 {
		t.Fatalf("%d mappings, want 1", len(p.Mappings))
	}
	f, err := tab.openHeld(&p.Mappings[0])
	if err != nil {
		t.Fatalf("open the loader after the process was read again: %v", err)
	}
	f.Close()

	// Forgetting the process releases what it held, once.
	tab.MarkExited(42)
	tab.Sweep()
	if _, err := tab.openHeld(&p.Mappings[0]); err == nil {
		t.Error("the loader is still held after its only process was forgotten")
	}
}

// TestInsertMapping: a mapping made over part of another splits it as the
// kernel does, the part above keeping its file offset.
func TestInsertMapping(t *testing.T) {
	ms := []Mapping{{Start: 0x1000, Limit: 0x5000, Offset: 0, Inode: 7, Path: "/a"}}
	got := insertMapping(ms, Mapping{Start: 0x2000, Limit: 0x3000, Inode: 9, Path: "/b"})
	want := []Mapping{
		{Start: 0x1000, Limit: 0x2000, Offset: 0, Inode: 7, Path: "/a"},
		{Start: 0x2000, Limit: 0x3000, Inode: 9, Path: "/b"},
		{Start: 0x3000, Limit: 0x5000, Offset: 0x2000, Inode: 7, Path: "/a"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if len(ms) != 1 || ms[0].Limit != 0x5000 {
		t.Errorf("the old list changed: %+v", ms)
	}
}
