package symbolize

import (
	"debug/elf"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// TestSpilledSectionsSymbolizeAlike: a binary with zstd-compressed DWARF
// symbolizes to the same frames whether its decompressed sections are
// spilled to a mapped file or kept on the heap, and spilled they are
// outside the heap: mapped, and not counted at their size in the cache.
func TestSpilledSectionsSymbolizeAlike(t *testing.T) {
	bin, _ := zstdBuild(t)
	syms := elfSymbols(t, bin)
	var addrs []uint64
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 {
			addrs = append(addrs, s.Value+s.Size/2)
		}
	}
	if len(addrs) == 0 {
		t.Fatal("no functions in the test binary")
	}
	open := func(dir string) (*Object, [][]Frame) {
		t.Helper()
		defer func(old string) { spillDir = old }(spillDir)
		spillDir = dir
		f, err := os.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		o, err := NewObject(f, bin, []string{t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		var all [][]Frame
		for _, a := range addrs {
			fr, err := o.Frames(a)
			if err != nil {
				t.Errorf("%#x: %v", a, err)
			}
			all = append(all, fr)
		}
		return o, all
	}
	heap, want := open("")
	defer heap.Close()
	dir := t.TempDir()
	if inMemoryFS(dir) {
		t.Skipf("%s is in memory (tmpfs): nothing is spilled there; set TMPDIR to a disk", dir)
	}
	spilled, got := open(dir)
	defer spilled.Close()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("spilled sections give other frames:\n%v\nwant\n%v", got, want)
	}
	if heap.dw == nil || spilled.dw == nil {
		t.Fatal("no DWARF index")
	}
	if len(heap.dw.spilled) != 0 || len(spilled.dw.spilled) == 0 {
		t.Errorf("%d sections spilled with no spill directory, %d with one", len(heap.dw.spilled), len(spilled.dw.spilled))
	}
	inSpill := false
	for _, m := range spilled.dw.spilled {
		inSpill = inSpill || inside(spilled.dw.info, m)
	}
	if !inSpill {
		t.Error(".debug_info is not read from a spilled mapping")
	}
	if spilled.Cost() >= heap.Cost() {
		t.Errorf("cost %d spilled, %d on the heap: the spilled sections are counted as heap", spilled.Cost(), heap.Cost())
	}
	t.Logf("%d addresses; cost %d bytes on the heap, %d spilled (%d sections)", len(addrs), heap.Cost(), spilled.Cost(), len(spilled.dw.spilled))
}

// TestNoSpillToMemory: a spill directory on tmpfs keeps the sections on the
// heap, where they are counted (a tmpfs file is unreclaimable memory too).
func TestNoSpillToMemory(t *testing.T) {
	if !inMemoryFS("/dev/shm") {
		t.Skip("/dev/shm is not tmpfs here")
	}
	defer func(old string) { spillDir = old }(spillDir)
	spillDir = "/dev/shm"
	if m, ok := spillBuffer(4096); ok || m != nil {
		t.Fatalf("spilled to tmpfs: %v", ok)
	}
	if inMemoryFS(t.TempDir()) {
		return
	}
	spillDir = t.TempDir()
	m, ok := spillBuffer(4096)
	if !ok {
		t.Fatalf("not spilled to %s on disk", spillDir)
	}
	defer unmap(m)
	m[4095] = 1 // writable until sealed
	if ents, err := os.ReadDir(spillDir); err != nil || len(ents) != 0 {
		t.Errorf("the spill file is not unlinked: %v %v", ents, err)
	}
}

// TestGiveBackDropsResidentPages: after lookups, the pages of an object's
// mappings (its file and the spilled sections) are resident; GiveBack
// leaves none of them resident, and lookups afterwards read them in again
// and give the same frames.
func TestGiveBackDropsResidentPages(t *testing.T) {
	bin, _ := zstdBuild(t)
	if inMemoryFS(os.TempDir()) {
		t.Skipf("%s is in memory (tmpfs): nothing is spilled there; set TMPDIR to a disk", os.TempDir())
	}
	var addrs []uint64
	for _, s := range elfSymbols(t, bin) {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 {
			addrs = append(addrs, s.Value+s.Size/2)
		}
	}
	o, err := OpenObject(bin)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{})
	defer s.Close()
	s.cache.release(s.cache.add(bin, o))
	frames := func() [][]Frame {
		var all [][]Frame
		for _, a := range addrs {
			fr, err := o.Frames(a)
			if err != nil {
				t.Fatalf("%#x: %v", a, err)
			}
			all = append(all, fr)
		}
		return all
	}
	want := frames()
	if o.dw == nil || len(o.dw.spilled) == 0 {
		t.Fatal("no spilled sections: nothing of what GiveBack is for")
	}
	before := residentBytes(t, o.mapped)
	if before == 0 {
		t.Fatal("nothing resident after the lookups")
	}
	s.GiveBack()
	if after := residentBytes(t, o.mapped); after != 0 {
		t.Errorf("%d bytes resident after GiveBack (%d before)", after, before)
	}
	if got := frames(); !reflect.DeepEqual(got, want) {
		t.Errorf("frames after GiveBack:\n%v\nwant\n%v", got, want)
	}
	t.Logf("%d mappings: %d bytes resident before GiveBack", len(o.mapped), before)
}

// residentBytes sums the Rss smaps reports for the mappings that start at
// the first byte of each of ms.
func residentBytes(t *testing.T, ms [][]byte) int64 {
	t.Helper()
	starts := map[uint64]bool{}
	for _, m := range ms {
		starts[uint64(uintptrOf(&m[0]))] = true
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	found, in := 0, false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			start, _ := strconv.ParseUint(strings.Split(f[0], "-")[0], 16, 64)
			in = starts[start]
			if in {
				found++
			}
		} else if in && len(f) == 3 && f[0] == "Rss:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			n += kb << 10
		}
	}
	if found != len(starts) {
		t.Fatalf("%d of %d mappings found in /proc/self/smaps", found, len(starts))
	}
	return n
}
