package proc

import (
	"os"
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
		f, err := tab.OpenMapping(&m)
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
