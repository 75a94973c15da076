package tracer

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/emberprof/ember/bpf"
	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/unwind"
)

func TestParseUnwindMode(t *testing.T) {
	for in, want := range map[string]UnwindMode{"": UnwindAuto, "tables": UnwindTables, "fp": UnwindFP} {
		if got, err := ParseUnwindMode(in); err != nil || got != want {
			t.Errorf("ParseUnwindMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseUnwindMode("dwarf"); err == nil {
		t.Error("ParseUnwindMode(dwarf) succeeded")
	}
}

// A profiled process gets an unwind_procs entry whose mappings are its
// executable mappings, and whose tables hold, byte for byte, what
// unwind.Table.Encode makes of its binaries.
// traceChain starts the chain workload (built without frame pointers) and
// a tracer with the table walker on it alone.
func traceChain(t *testing.T) (*Tracer, *proc.Table, uint32) {
	t.Helper()
	requireBPF(t)
	w := startChain(t, "10", "-O2", "-g", "-fomit-frame-pointer")
	procs := proc.NewTable()
	t.Cleanup(func() { procs.Close() })
	tr, err := Start(Config{Frequency: 499, PIDs: []int{w.Process.Pid}, OnCPU: true, Unwind: UnwindTables}, procs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, procs, uint32(w.Process.Pid)
}

func TestUnwinderLoadsProcess(t *testing.T) {
	tr, procs, pid := traceChain(t)
	var entry []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err := tr.objs.UnwindProcs.Lookup(pid, &entry); err == nil {
			break
		}
	}
	if len(entry) != unwind.ProcSize {
		t.Fatalf("no unwind_procs entry for pid %d within 10s", pid)
	}
	p := procs.Get(int(pid))
	n := binary.LittleEndian.Uint32(entry)
	// Every executable mapping: files and the vDSO with tables, anonymous
	// ones (JIT code) walked with frame pointers.
	if want := len(p.Mappings); int(n) != want {
		t.Errorf("entry has %d mappings, the process %d executable mappings", n, want)
	}
	checked := 0
	for i := range n {
		e := entry[8+i*unwind.MappingSize:]
		start, end := binary.LittleEndian.Uint64(e), binary.LittleEndian.Uint64(e[8:])
		id, flags := binary.LittleEndian.Uint32(e[24:]), binary.LittleEndian.Uint32(e[28:])
		m := p.Find(start)
		if m == nil || m.Start != start || m.Limit != end {
			t.Errorf("mapping %#x-%#x is not one of the process's", start, end)
			continue
		}
		if flags&unwind.MappingFramePointers != 0 || m.Path == "[vdso]" {
			continue
		}
		var raw []byte
		if err := tr.objs.UnwindTables.Lookup(id, &raw); err != nil {
			t.Fatalf("unwind_tables[%d]: %v", id, err)
		}
		var ti unwind.TableInfo
		if err := ti.UnmarshalBinary(raw); err != nil {
			t.Fatal(err)
		}
		table, err := unwind.Open(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := table.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if ti.Base != enc.Base || int(ti.NumRows) != enc.NumRows() || int(ti.NumRules) != enc.NumRules() || int(ti.NumPages) != enc.NumPages() {
			t.Errorf("%s: table entry %+v does not match the encoded table", m.Path, ti)
			continue
		}
		for _, a := range []struct {
			name        string
			first, n    uint32
			size        int
			want        []byte
			lookupBytes func(k uint32) []byte
		}{
			{"rows", ti.FirstRow, ti.NumRows, unwind.RowSize, enc.Rows, func(k uint32) []byte {
				var v uint32
				tr.objs.UnwindRows.Lookup(k, &v)
				return binary.LittleEndian.AppendUint32(nil, v)
			}},
			{"rules", ti.FirstRule, ti.NumRules, unwind.RuleSize, enc.Rules, func(k uint32) []byte {
				var v uint64
				tr.objs.UnwindRules.Lookup(k, &v)
				return binary.LittleEndian.AppendUint64(nil, v)
			}},
			{"pages", ti.FirstPage, ti.NumPages, unwind.PageSize, enc.Pages, func(k uint32) []byte {
				var v uint64
				tr.objs.UnwindPages.Lookup(k, &v)
				return binary.LittleEndian.AppendUint64(nil, v)
			}},
		} {
			var got []byte
			for k := a.first; k < a.first+a.n; k++ {
				got = append(got, a.lookupBytes(k)...)
			}
			if !bytes.Equal(got, a.want) {
				t.Errorf("%s: %s in the map differ from the encoded table", m.Path, a.name)
			}
		}
		checked++
	}
	t.Logf("%d mappings, %d tables checked byte for byte", n, checked)
	if checked < 2 {
		t.Errorf("checked %d tables, want the binary's and libc's", checked)
	}
}

// BenchmarkPlaceTable measures writing a built table into the BPF maps
// (rows, rules, pages, then its table entry), for libc and for the largest
// .eh_frame among the given libraries, against building the same table:
//
//	go test -run '^$' -bench PlaceTable -benchtime 3x ./internal/tracer/
func BenchmarkPlaceTable(b *testing.B) {
	testutil.RequireRoot(b)
	if err := Preflight(""); err != nil {
		testutil.SkipOrFail(b, "%v", err)
	}
	objs, err := bpf.Load(bpf.Config{OnCPU: true, UnwindTables: true})
	if err != nil {
		b.Fatal(err)
	}
	defer objs.Close()
	u := newUnwinder(objs, proc.NewTable(), bpf.DefaultUnwindSizes, 0)
	defer u.close()
	for _, path := range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libclang-cpp.so.19.1", "/usr/lib/aarch64-linux-gnu/libc.so.6"} {
		ef, err := elf.Open(path)
		if err != nil {
			continue
		}
		b.Run(filepath.Base(path), func(b *testing.B) {
			var build, place time.Duration
			var size int64
			for range b.N {
				start := time.Now()
				t, err := unwind.NewTable(ef)
				if err != nil {
					b.Fatal(err)
				}
				build += time.Since(start)
				start = time.Now()
				lt, err := u.place(path, t, path)
				if err != nil {
					b.Fatal(err)
				}
				place += time.Since(start)
				size = lt.size
				u.mu.Lock()
				lt.refs = 0
				u.evictUnused()
				u.mu.Unlock()
			}
			b.ReportMetric(float64(build.Milliseconds())/float64(b.N), "build-ms")
			b.ReportMetric(float64(place.Milliseconds())/float64(b.N), "place-ms")
			b.ReportMetric(float64(place)/float64(build), "place/build")
			b.ReportMetric(float64(size), "map-bytes")
		})
		ef.Close()
	}
}

// writeMapped writes through mappings of a few pages at a time: entries
// that start mid-page, span chunks, and carry padding (12-byte values laid
// out 16 bytes apart) land where a lookup finds them, and their neighbours
// are left as they were.
// TestUnwinderRewritesEntryTheKernelDropped: the kernel drops a process's
// entry at its exec (process_exec), which can come after user space read the
// new image mid-exec and wrote an entry of it. A load that then found its
// mappings unchanged left the entry missing: the samples of a 50 ms Go
// program were copied for want of one and never walked (9% of them). The
// test drops the entry as the exec does and asks for a load.
func TestUnwinderRewritesEntryTheKernelDropped(t *testing.T) {
	tr, _, pid := traceChain(t)
	hasEntry := func() bool {
		e, err := tr.objs.UnwindProcs.LookupBytes(pid)
		return err == nil && e != nil
	}
	waitEntry := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !hasEntry(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no unwind_procs entry for pid %d within 10s %s", pid, what)
			}
		}
	}
	waitEntry("of its start")
	if err := tr.objs.UnwindProcs.Delete(pid); err != nil {
		t.Fatal(err)
	}
	tr.unw.enqueue(pid, false)
	waitEntry("after the kernel dropped it and a load was asked for")
}

func TestWriteMappedArray(t *testing.T) {
	testutil.RequireRoot(t)
	if err := Preflight(""); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	for _, size := range []int{4, 8, 12} {
		t.Run(fmt.Sprintf("%d-byte values", size), func(t *testing.T) {
			const entries = 300_000 // several 1 MiB chunks at every size
			m, err := ebpf.NewMap(&ebpf.MapSpec{
				Type: ebpf.Array, KeySize: 4, ValueSize: uint32(size), MaxEntries: entries, Flags: bpfFMmapable,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			value := func(k uint32, mark byte) []byte {
				v := make([]byte, size)
				binary.LittleEndian.PutUint32(v, k)
				v[size-1] = mark
				return v
			}
			// Neighbours first, by the syscall path.
			const first, n = 1001, 250_000
			for _, k := range []uint32{0, first - 1, first + n, entries - 1} {
				if err := m.Put(k, value(k, 'n')); err != nil {
					t.Fatal(err)
				}
			}
			var data []byte
			for k := uint32(first); k < first+n; k++ {
				data = append(data, value(k, 'w')...)
			}
			if err := writeMapped(m, first, data, size); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, size)
			check := func(k uint32, mark byte) {
				if err := m.Lookup(k, &got); err != nil {
					t.Fatal(err)
				}
				if want := value(k, mark); !bytes.Equal(got, want) {
					t.Errorf("entry %d = %x, want %x", k, got, want)
				}
			}
			for k := uint32(first); k < first+n; k += 997 {
				check(k, 'w')
			}
			// Read back, packed, as written.
			back, err := readArray(m, first, n, size)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, data) {
				t.Error("entries read back through mappings differ from those written")
			}
			check(first+n-1, 'w')
			for _, k := range []uint32{0, first - 1, first + n, entries - 1} {
				check(k, 'n')
			}
		})
	}
}

// TestReadArrayBySyscall: a map that cannot be mapped is read back entry by
// entry, packed, as writeArray wrote it.
func TestReadArrayBySyscall(t *testing.T) {
	testutil.RequireRoot(t)
	if err := Preflight(""); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var data []byte
	for k := range uint32(300) {
		data = binary.LittleEndian.AppendUint32(data, k*7+1)
	}
	if err := writeArray(m, 100, data, 4); err != nil {
		t.Fatal(err)
	}
	back, err := readArray(m, 100, 300, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, data) {
		t.Errorf("read back %x..., want %x...", back[:16], data[:16])
	}
	if _, err := readArray(m, 900, 200, 4); err == nil {
		t.Error("reading past the map's end succeeded")
	}
}

// A large table (the test binary's .gopclntab) is built in the background:
// while its build is held, another process's entry is written, the large
// binary's process has none and its load is counted as waiting; once the
// build ends, that process gets its entry.
func TestUnwinderLargeTableInBackground(t *testing.T) {
	requireBPF(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if ef, err := elf.Open(self); err != nil {
		t.Fatal(err)
	} else if n := frameSourceBytes(ef); ef.Close() == nil && n <= largeTableSource {
		t.Fatalf("%s has %d bytes of frame information, not more than %d", self, n, largeTableSource)
	}
	release := make(chan struct{})
	var once sync.Once
	testHookBuild = func(path string) {
		if path == self {
			<-release
		}
	}
	defer func() { testHookBuild = nil }()
	w := startChain(t, "20", "-O2", "-g", "-fomit-frame-pointer")
	procs := proc.NewTable()
	defer procs.Close()
	tr, err := Start(Config{Frequency: 99, PIDs: []int{os.Getpid(), w.Process.Pid}, IncludeSelf: true, OnCPU: true,
		Unwind: UnwindTables}, procs)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	defer once.Do(func() { close(release) }) // before Close, which waits for the build
	hasEntry := func(pid int, within time.Duration) bool {
		var entry []byte
		for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
			if tr.objs.UnwindProcs.Lookup(uint32(pid), &entry) == nil {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
		}
	}
	if !hasEntry(w.Process.Pid, 10*time.Second) {
		t.Fatalf("no entry for the small process within 10 s while the large table's build is held")
	}
	// The test process asks for its tables at its first sample, and left to
	// itself it is on a CPU for microseconds every 50 ms: it may go 10 s
	// without one (CI did). It spins until its load has waited.
	spun := make(chan struct{})
	go func() {
		for {
			select {
			case <-spun:
				return
			default:
			}
		}
	}()
	deferred := 0
	for deadline := time.Now().Add(10 * time.Second); deferred == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		us, _ := tr.UnwindStats()
		deferred = us.Deferred
	}
	close(spun)
	if deferred == 0 {
		t.Errorf("UnwindStats.Deferred = 0 after 10 s: the test process's load did not wait for a background build")
	}
	if hasEntry(os.Getpid(), 0) {
		t.Fatalf("the test process has an entry while its table's build is held")
	}
	once.Do(func() { close(release) })
	if !hasEntry(os.Getpid(), 30*time.Second) {
		t.Fatalf("no entry for the test process within 30 s of its table's build")
	}
}
