package proc

import (
	"debug/elf"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/emberprof/ember/symbolize/objfile"
)

// BenchmarkMappedObjects is what the unwind-table builder (and the
// symbolizer, on a miss) does for each file mapping of a process it loads:
// get the file, its ELF headers and its cache key. "reopen" is how it was
// done before the shared cache (a new descriptor from Table.Open, debug/elf
// parsing it, the build ID read again, for every process that maps the
// file); "cached" is Table.Object, the file the table holds, opened and
// parsed once. The cached run reports its time and bytes as fractions of
// the reopen run's (x-time, x-bytes), and what the cache keeps per held
// file (retained-B/file). The process is a python3 (a few dozen mappings).
func BenchmarkMappedObjects(b *testing.B) {
	py, err := exec.LookPath("python3")
	if err != nil {
		b.Skip("no python3")
	}
	cmd := exec.Command(py, "-c", "import ssl, ctypes, time; time.sleep(600)")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	tab := NewTable()
	defer tab.Close()
	var p *Process
	for i, last := 0, -1; i < 100; i++ { // until python has loaded its modules
		if p, err = tab.Add(cmd.Process.Pid); err != nil {
			b.Fatal(err)
		}
		if len(p.Mappings) > 10 && len(p.Mappings) == last {
			break
		}
		last = len(p.Mappings)
		time.Sleep(50 * time.Millisecond)
	}
	var files []*Mapping
	for i := range p.Mappings {
		if p.Mappings[i].Inode != 0 {
			files = append(files, &p.Mappings[i])
		}
	}
	pid := cmd.Process.Pid

	// measure runs one way b.N times, and returns its time and bytes per op.
	measure := func(b *testing.B, one func(m *Mapping)) (ns, bytes float64) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			for _, m := range files {
				one(m)
			}
		}
		b.StopTimer()
		runtime.ReadMemStats(&after)
		return float64(b.Elapsed().Nanoseconds()) / float64(b.N), float64(after.TotalAlloc-before.TotalAlloc) / float64(b.N)
	}
	var reopenNS, reopenBytes float64
	b.Run("reopen", func(b *testing.B) {
		reopenNS, reopenBytes = measure(b, func(m *Mapping) {
			f, err := tab.Open(pid, m)
			if err != nil {
				b.Fatal(err)
			}
			st, err := f.Stat()
			if err != nil {
				b.Fatal(err)
			}
			if ef, err := elf.NewFile(f); err == nil {
				gnu, _ := objfile.BuildIDs(ef)
				_ = objfile.Key(gnu, st)
			}
			f.Close()
		})
	})
	b.Run("cached", func(b *testing.B) {
		ns, bytes := measure(b, func(m *Mapping) {
			f, err := tab.Object(pid, m)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.ELF(); err == nil {
				_ = f.Key()
			}
			f.Release()
		})
		if reopenNS > 0 {
			b.ReportMetric(ns/reopenNS, "x-time")
			b.ReportMetric(bytes/max(reopenBytes, 1), "x-bytes")
		}
	})
	// What a held file costs the heap: the same files held by a fresh
	// table (descriptor, ELF headers and sections, build IDs).
	b.Run("held", func(b *testing.B) {
		var before, after runtime.MemStats
		var retained float64
		var n int
		for range b.N {
			runtime.GC()
			runtime.ReadMemStats(&before)
			fresh := NewTable()
			if _, err := fresh.Add(pid); err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			n = fresh.cache.Stats().Files
			retained += float64(int64(after.HeapAlloc) - int64(before.HeapAlloc))
			fresh.Close()
		}
		b.ReportMetric(retained/float64(b.N)/float64(max(n, 1)), "retained-B/file")
		b.Logf("%d file mappings, %d files held", len(files), n)
	})
}
