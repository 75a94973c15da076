package tracer

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/bpf"
	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/unwind"
)

// UnwindMode says how on-CPU user stacks are walked.
type UnwindMode string

const (
	// UnwindAuto walks with unwind tables where the kernel can (bpf_loop,
	// bpf_task_pt_regs), else with frame pointers.
	UnwindAuto UnwindMode = ""
	// UnwindTables walks with unwind tables built from .eh_frame (and Go
	// code's from .gopclntab), falling back to frame pointers for Go before
	// 1.20, binaries without CFI, and processes whose tables are not loaded
	// yet.
	UnwindTables UnwindMode = "tables"
	// UnwindFP walks with frame pointers only (bpf_get_stackid).
	UnwindFP UnwindMode = "fp"
)

// ParseUnwindMode parses the --unwind flag.
func ParseUnwindMode(s string) (UnwindMode, error) {
	switch m := UnwindMode(s); m {
	case UnwindAuto, UnwindTables, UnwindFP:
		return m, nil
	}
	return "", fmt.Errorf("unwind mode %q: want tables or fp", s)
}

// unwindCacheBudget bounds the memory of built tables kept for reuse (a
// table takes about 24 bytes a row in Go: libc's 0.7 MB, libclang-cpp's
// 32 MB). Tables evicted from it are rebuilt when a process needs them again.
const unwindCacheBudget = 96 << 20

// UnwindStats describes the tables loaded into the kernel.
type UnwindStats struct {
	Processes  int           // processes with an unwind_procs entry now
	Tables     int           // tables in the maps now
	Bytes      int64         // their size in the maps
	Built      int           // tables built (or failed to), cache misses
	BuildTime  time.Duration // total time building them
	LoadFailed int           // processes whose entry could not be written
	Largest    string        // the largest table's file
	LargestB   int64         // and its size in the maps

	// Go binaries: tables built from their pclntab, functions in them that
	// could not be described (each walks no further), and mappings of Go
	// before 1.20 walked with frame pointers instead (frameless leaves lose
	// their callers there).
	GoTables, GoBadFuncs, GoFramePointers int
}

// unwinder loads the unwind tables of processes into the kernel maps, in
// the background: the sampling path never waits for it. Until a process's
// entry is written, its stacks are walked with frame pointers.
type unwinder struct {
	objs  *bpf.Objects
	procs *proc.Table
	cache *unwind.Cache
	jobs  chan unwindJob
	done  chan struct{}
	wg    sync.WaitGroup

	mu                 sync.Mutex // guards what follows, for Stats
	rows, rules, pages *unwind.Space
	ids                *unwind.Space
	tables             map[string]*loadedTable // by binary key
	pids               map[uint32][]*loadedTable
	written            map[uint32]string // pid -> mapsKey of its entry
	stats              UnwindStats

	vdsoOnce sync.Once
	vdsoELF  *elf.File
	vdsoSize uint64
	vdsoErr  error
}

type unwindJob struct {
	pid  uint32
	exit bool
}

// loadedTable is a table in the maps, shared by the processes that map its
// binary; with no users it stays loaded until its space is needed.
type loadedTable struct {
	key  string
	id   uint32
	info unwind.TableInfo
	size int64
	refs int
}

func newUnwinder(objs *bpf.Objects, procs *proc.Table, sizes bpf.UnwindSizes) *unwinder {
	u := &unwinder{
		objs:    objs,
		procs:   procs,
		cache:   unwind.NewCache(unwindCacheBudget, 1),
		jobs:    make(chan unwindJob, 4096),
		done:    make(chan struct{}),
		rows:    unwind.NewSpace(sizes.Rows),
		rules:   unwind.NewSpace(sizes.Rules),
		pages:   unwind.NewSpace(sizes.Pages),
		ids:     unwind.NewSpace(sizes.Tables),
		tables:  map[string]*loadedTable{},
		pids:    map[uint32][]*loadedTable{},
		written: map[uint32]string{},
	}
	u.wg.Add(1)
	go u.run()
	return u
}

// enqueue asks for pid's tables to be loaded (or, exit, dropped). It never
// blocks: a full queue drops the request, and that process keeps frame
// pointers.
func (u *unwinder) enqueue(pid uint32, exit bool) {
	select {
	case u.jobs <- unwindJob{pid, exit}:
	default:
		slog.Debug("unwind queue full", "pid", pid)
	}
}

func (u *unwinder) close() {
	close(u.done)
	u.wg.Wait()
}

func (u *unwinder) run() {
	defer u.wg.Done()
	for {
		select {
		case <-u.done:
			return
		case j := <-u.jobs:
			if j.exit {
				u.unload(j.pid)
				continue
			}
			if err := u.load(j.pid); err != nil {
				u.mu.Lock()
				u.stats.LoadFailed++
				u.mu.Unlock()
				slog.Debug("load unwind tables", "pid", j.pid, "err", err)
			}
		}
	}
}

// load writes the unwind_procs entry of pid, building and loading the
// tables of its executable mappings first, so that the kernel never sees an
// entry that points at a table not yet written.
func (u *unwinder) load(pid uint32) error {
	p := u.procs.Get(int(pid))
	if p == nil {
		return fmt.Errorf("process %d not known", pid)
	}
	mk := mapsKey(p)
	u.mu.Lock()
	same := u.written[pid] == mk
	u.mu.Unlock()
	if same {
		// Nothing new mapped (a walk met JIT or anonymous code): leave the
		// entry, and its stale flag, as they are, so it asks no more.
		return nil
	}
	var (
		ms   []unwind.Mapping
		used []*loadedTable
	)
	for i := 0; i < len(p.Mappings); i++ {
		select {
		case <-u.done:
			return errors.New("tracer closing")
		default:
		}
		// Re-read meanwhile (the exec after a fork: the child's first
		// reading is of Ember's own image, and building its table would
		// keep the new program's samples on frame pointers): start over
		// with the newest reading, keeping nothing from the old.
		if q := u.procs.Get(int(pid)); q != nil && q != p {
			u.release(used)
			p, mk, ms, used, i = q, mapsKey(q), nil, nil, -1
			continue
		}
		m := &p.Mappings[i]
		if m.Inode == 0 && m.Path != "[vdso]" {
			// Anonymous executable memory is JIT code (V8, Python's
			// -X perf trampolines, the JVM), which has no CFI but keeps
			// frame pointers: the walk goes through it with them and
			// back into tabled code, instead of stopping at its first
			// frame. (Code JITted after this reading is outside every
			// mapping; the walk asks for a new reading, as for dlopen.)
			ms = append(ms, unwind.Mapping{Start: m.Start, End: m.Limit, Flags: unwind.MappingFramePointers})
			continue
		}
		um, lt, err := u.mapping(m)
		if err != nil {
			slog.Debug("unwind table", "pid", pid, "file", m.Path, "err", err)
		}
		if lt != nil {
			used = append(used, lt)
		}
		ms = append(ms, um)
	}
	if len(ms) > unwind.MaxMappings {
		ms = ms[:unwind.MaxMappings]
	}
	b, err := unwind.EncodeProc(ms)
	if err == nil {
		err = u.objs.UnwindProcs.Put(pid, b)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	old := u.pids[pid]
	if err != nil {
		used, old = old, used // keep the old entry's references
	}
	u.pids[pid] = used
	for _, lt := range old {
		lt.refs--
	}
	if err != nil {
		return fmt.Errorf("write unwind_procs[%d]: %w", pid, err)
	}
	u.written[pid] = mk
	slog.Debug("unwind tables loaded", "pid", pid, "mappings", len(ms), "tables", len(used))
	return nil
}

// release drops references taken by mapping.
func (u *unwinder) release(lts []*loadedTable) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, lt := range lts {
		lt.refs--
	}
}

// vdso returns the vDSO image, read once from Ember's own memory: the
// kernel maps the same image into every process of its architecture. A
// mapping of another size (a 32-bit process's vDSO) is not that image.
func (u *unwinder) vdso(size uint64) (*elf.File, error) {
	u.vdsoOnce.Do(func() {
		u.vdsoELF, u.vdsoSize, u.vdsoErr = readOwnVDSO()
	})
	if u.vdsoErr != nil {
		return nil, u.vdsoErr
	}
	if size != u.vdsoSize {
		return nil, fmt.Errorf("vDSO of %d bytes, Ember's has %d", size, u.vdsoSize)
	}
	return u.vdsoELF, nil
}

func readOwnVDSO() (*elf.File, uint64, error) {
	b, err := proc.ReadOwnVDSO()
	if err != nil {
		return nil, 0, err
	}
	ef, err := elf.NewFile(bytes.NewReader(b))
	return ef, uint64(len(b)), err
}

// mapsKey identifies the executable mappings of p.
func mapsKey(p *proc.Process) string {
	var b []byte
	for _, m := range p.Mappings {
		b = fmt.Appendf(b, "%x-%x:%x:%d;", m.Start, m.Limit, m.Offset, m.Inode)
	}
	return string(b)
}

// mapping returns the unwind_mapping of one executable file mapping and the
// table it uses (nil for a frame-pointer mapping), with a reference taken.
func (u *unwinder) mapping(m *proc.Mapping) (unwind.Mapping, *loadedTable, error) {
	fp := unwind.Mapping{Start: m.Start, End: m.Limit, Flags: unwind.MappingFramePointers}
	var ef *elf.File
	if m.Path == "[vdso]" {
		var err error
		if ef, err = u.vdso(m.Limit - m.Start); err != nil {
			return fp, nil, err
		}
	} else {
		f, err := u.procs.OpenMapping(m)
		if err != nil {
			return fp, nil, err
		}
		defer f.Close()
		if ef, err = elf.NewFile(f); err != nil {
			return fp, nil, err
		}
	}
	bias, err := unwind.Bias(ef, m.Start, m.Offset)
	if err != nil {
		return fp, nil, err
	}
	fp.Bias = bias
	key := binaryKey(ef, m)
	u.mu.Lock()
	lt := u.tables[key]
	if lt != nil {
		lt.refs++
	}
	u.mu.Unlock()
	if lt == nil {
		t, err, ok := u.cache.Get(key)
		if !ok {
			start := time.Now()
			t, err = u.cache.GetOrBuild(key, func() (*unwind.Table, error) { return unwind.NewTable(ef) })
			u.mu.Lock()
			u.stats.Built++
			u.stats.BuildTime += time.Since(start)
			u.mu.Unlock()
		}
		if errors.Is(err, unwind.ErrOldGo) {
			// Go before 1.20: its pclntab layout is not read, so its
			// frameless leaves lose their callers. Counted once per
			// mapping load, said at debug level by load.
			u.mu.Lock()
			u.stats.GoFramePointers++
			u.mu.Unlock()
			return fp, nil, fmt.Errorf("walked with frame pointers: %w", err)
		}
		if err != nil {
			return fp, nil, err
		}
		if t.Go != nil {
			u.mu.Lock()
			u.stats.GoTables++
			u.stats.GoBadFuncs += t.Go.BadFuncs
			u.mu.Unlock()
		}
		if lt, err = u.place(key, t, m.Path); err != nil {
			return fp, nil, err
		}
	}
	return unwind.Mapping{Start: m.Start, End: m.Limit, Bias: bias, TableID: lt.id}, lt, nil
}

// place writes a table into the maps, rows, rules and pages first and its
// unwind_tables entry last, and returns it with one reference.
func (u *unwinder) place(key string, t *unwind.Table, path string) (*loadedTable, error) {
	e, err := t.Encode()
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if lt := u.tables[key]; lt != nil { // placed meanwhile
		lt.refs++
		return lt, nil
	}
	var ti unwind.TableInfo
	var id uint32
	alloc := func() error {
		var err error
		if ti.FirstRow, err = u.rows.Alloc(uint32(e.NumRows())); err != nil {
			return err
		}
		if ti.FirstRule, err = u.rules.Alloc(uint32(e.NumRules())); err != nil {
			u.rows.Release(ti.FirstRow, uint32(e.NumRows()))
			return err
		}
		if ti.FirstPage, err = u.pages.Alloc(uint32(e.NumPages())); err != nil {
			u.rows.Release(ti.FirstRow, uint32(e.NumRows()))
			u.rules.Release(ti.FirstRule, uint32(e.NumRules()))
			return err
		}
		if id, err = u.ids.Alloc(1); err != nil {
			u.rows.Release(ti.FirstRow, uint32(e.NumRows()))
			u.rules.Release(ti.FirstRule, uint32(e.NumRules()))
			u.pages.Release(ti.FirstPage, uint32(e.NumPages()))
			return err
		}
		return nil
	}
	if err := alloc(); errors.Is(err, unwind.ErrNoSpace) {
		u.evictUnused()
		err = alloc()
	}
	if err != nil {
		return nil, err
	}
	ti.Base, ti.Arch = e.Base, e.Arch
	ti.NumRows, ti.NumRules, ti.NumPages = uint32(e.NumRows()), uint32(e.NumRules()), uint32(e.NumPages())
	lt := &loadedTable{key: key, id: id, info: ti, size: int64(e.Size()), refs: 1}
	err = writeArray(u.objs.UnwindRows, ti.FirstRow, e.Rows, unwind.RowSize)
	if err == nil {
		err = writeArray(u.objs.UnwindRules, ti.FirstRule, e.Rules, unwind.RuleSize)
	}
	if err == nil {
		err = writeArray(u.objs.UnwindPages, ti.FirstPage, e.Pages, unwind.PageSize)
	}
	if err == nil {
		b, _ := ti.MarshalBinary()
		err = u.objs.UnwindTables.Put(id, b)
	}
	if err != nil {
		u.free(lt)
		return nil, fmt.Errorf("write table of %s: %w", path, err)
	}
	u.tables[key] = lt
	u.stats.Bytes += lt.size
	if lt.size > u.stats.LargestB {
		u.stats.Largest, u.stats.LargestB = path, lt.size
	}
	return lt, nil
}

// evictUnused drops the tables no process uses. u.mu is held.
func (u *unwinder) evictUnused() {
	for key, lt := range u.tables {
		if lt.refs > 0 {
			continue
		}
		// No unwind_procs entry points at it: clear its entry, then reuse.
		b, _ := unwind.TableInfo{}.MarshalBinary()
		if err := u.objs.UnwindTables.Put(lt.id, b); err != nil {
			continue
		}
		delete(u.tables, key)
		u.stats.Bytes -= lt.size
		u.free(lt)
	}
}

// free returns a table's ranges. u.mu is held.
func (u *unwinder) free(lt *loadedTable) {
	ti := lt.info
	u.rows.Release(ti.FirstRow, ti.NumRows)
	u.rules.Release(ti.FirstRule, ti.NumRules)
	u.pages.Release(ti.FirstPage, ti.NumPages)
	u.ids.Release(lt.id, 1)
}

// unload deletes pid's entry and drops its references.
func (u *unwinder) unload(pid uint32) {
	if err := u.objs.UnwindProcs.Delete(pid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		slog.Debug("delete unwind_procs entry", "pid", pid, "err", err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, lt := range u.pids[pid] {
		lt.refs--
	}
	delete(u.pids, pid)
	delete(u.written, pid)
}

// Stats returns what is loaded.
func (u *unwinder) Stats() UnwindStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.stats
	s.Processes, s.Tables = len(u.pids), len(u.tables)
	return s
}

// writeArray writes data, entries of size bytes, into an array map from
// index first: through memory mappings where the map allows them, else in
// batches of updates, else one by one.
func writeArray(m *ebpf.Map, first uint32, data []byte, size int) error {
	if m.Flags()&bpfFMmapable != 0 {
		return writeMapped(m, first, data, size)
	}
	n := len(data) / size
	const chunk = 1 << 16
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		keys := make([]uint32, hi-lo)
		for i := range keys {
			keys[i] = first + uint32(lo+i)
		}
		var vals any
		switch size {
		case 4:
			v := make([]uint32, hi-lo)
			for i := range v {
				v[i] = binary.LittleEndian.Uint32(data[(lo+i)*4:])
			}
			vals = v
		case 8:
			v := make([]uint64, hi-lo)
			for i := range v {
				v[i] = binary.LittleEndian.Uint64(data[(lo+i)*8:])
			}
			vals = v
		default:
			return fmt.Errorf("array entries of %d bytes", size)
		}
		if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
			if !errors.Is(err, ebpf.ErrNotSupported) {
				return err
			}
			for i, k := range keys {
				if err := m.Put(k, data[(lo+i)*size:(lo+i+1)*size]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// bpfFMmapable is BPF_F_MMAPABLE of linux/bpf.h: the map can be mmap'd.
const bpfFMmapable = 1 << 10

// mappedChunk bounds how much of a map is mapped at once.
const mappedChunk = 1 << 20

// writeMapped writes entries into an mmapable array map through mappings of
// only the pages they fall in, one chunk at a time, each unmapped once
// written. A mapping of the whole map (ebpf.Map.Memory) would stay for the
// tracer's life, and the kernel maps every page of an array map when it is
// mapped (kernel/bpf/arraymap.c: remap_vmalloc_range): the unwind rows alone
// would add 24 MiB to Ember's resident set, whatever the tables in use.
func writeMapped(m *ebpf.Map, first uint32, data []byte, size int) error {
	n := len(data) / size
	// The kernel lays array values out 8-byte aligned
	// (kernel/bpf/arraymap.c: elem_size = round_up(value_size, 8)).
	stride := int64((size + 7) &^ 7)
	page := int64(os.Getpagesize())
	per := max(1, int(mappedChunk/stride))
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		start := (int64(first) + int64(lo)) * stride
		end := (int64(first) + int64(hi)) * stride
		off := start &^ (page - 1)
		length := (end - off + page - 1) &^ (page - 1)
		mem, err := unix.Mmap(m.FD(), off, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("map entries %d to %d of %s: %w", int64(first)+int64(lo), int64(first)+int64(hi), m, err)
		}
		b := mem[start-off:]
		for i := lo; i < hi; i++ {
			copy(b[int64(i-lo)*stride:], data[i*size:(i+1)*size])
		}
		if err := unix.Munmap(mem); err != nil {
			return fmt.Errorf("unmap entries of %s: %w", m, err)
		}
	}
	return nil
}

// binaryKey names a binary for the table cache: its GNU build ID, or the
// file's device and inode when it has none.
func binaryKey(ef *elf.File, m *proc.Mapping) string {
	if id := gnuBuildID(ef); id != "" {
		return "build:" + id
	}
	return fmt.Sprintf("file:%x:%d", m.Dev, m.Inode)
}

// gnuBuildID returns the hex GNU build ID note of ef, or "".
func gnuBuildID(ef *elf.File) string {
	s := ef.Section(".note.gnu.build-id")
	if s == nil || s.Size > 1024 {
		return ""
	}
	b, err := s.Data()
	if err != nil || len(b) < 16 {
		return ""
	}
	namesz := binary.LittleEndian.Uint32(b[0:])
	descsz := binary.LittleEndian.Uint32(b[4:])
	typ := binary.LittleEndian.Uint32(b[8:])
	off := 12 + (uint64(namesz)+3)&^3
	if typ != 3 /* NT_GNU_BUILD_ID */ || namesz != 4 || !bytes.HasPrefix(b[12:], []byte("GNU")) ||
		off+uint64(descsz) > uint64(len(b)) || descsz == 0 {
		return ""
	}
	return hex.EncodeToString(b[off : off+uint64(descsz)])
}
