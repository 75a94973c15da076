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

// TestExecKeepsPreExecImage: after an exec the image before it stays known
// (PreExec), its files held, for the samples taken before the exec; the
// next exec releases it, a fork child does not inherit it, and forgetting
// the process releases both images' files once.
func TestExecKeepsPreExecImage(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "42")
	if err := os.MkdirAll(filepath.Join(dir, "map_files"), 0o755); err != nil {
		t.Fatal(err)
	}
	shell := Mapping{Start: 0x55c300001000, Limit: 0x55c300020000, Offset: 0x1000, Dev: 0x801, Inode: 1234, Path: "/usr/bin/sh"}
	rng := fmt.Sprintf("%x-%x", shell.Start, shell.Limit)
	if err := os.WriteFile(filepath.Join(dir, "maps"), []byte(rng+" r-xp 00001000 08:01 1234 /usr/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "map_files", rng), []byte("sh"), 0o644); err != nil {
		t.Fatal(err)
	}
	tab := NewTable()
	tab.root = root
	defer tab.Close()
	if _, err := tab.Add(42); err != nil {
		t.Fatal(err)
	}

	// The exec: a new image, whose executable is mapped next.
	tab.Exec(42, "short")
	prog := Mapping{Start: 0x56aa00001000, Limit: 0x56aa00002000, Dev: 0x801, Inode: 99, Path: "/tmp/short"}
	pf, err := os.Open(filepath.Join(dir, "map_files", rng)) // any file: the test's stand-in
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Mapped(42, prog, pf); err != nil {
		t.Fatal(err)
	}
	p := tab.Get(42)
	if p.PreExec == nil || p.PreExec.Find(shell.Start+0x10) == nil {
		t.Fatalf("after the exec, PreExec = %+v, want the shell's image", p.PreExec)
	}
	if p.Find(shell.Start+0x10) != nil {
		t.Fatal("the new image maps the shell's address")
	}
	f, err := tab.openHeld(&shell)
	if err != nil {
		t.Fatalf("the shell's file is not held after the exec: %v", err)
	}
	f.Close()

	if !tab.Fork(42, 43) {
		t.Fatal("fork of a known process not added")
	}
	if c := tab.Get(43); c.PreExec != nil {
		t.Error("a fork child inherits its parent's image before its exec")
	}
	tab.forget(43)

	// The next exec keeps the second image, and releases the shell's.
	tab.Exec(42, "again")
	if p := tab.Get(42); p.PreExec == nil || p.PreExec.Find(prog.Start) == nil {
		t.Fatalf("after the second exec, PreExec = %+v, want short's image", p.PreExec)
	}
	if _, err := tab.openHeld(&shell); err == nil {
		t.Error("the shell's file is still held two execs later")
	}
	if f, err := tab.openHeld(&prog); err != nil {
		t.Errorf("short's file is not held after the second exec: %v", err)
	} else {
		f.Close()
	}
	tab.MarkExited(42)
	tab.Sweep()
	if _, err := tab.openHeld(&prog); err == nil {
		t.Error("short's file is still held after its process was forgotten")
	}
}
