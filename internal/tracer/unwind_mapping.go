package tracer

// The ELF side of the unwinder: the file behind one executable mapping (or
// the vDSO image), its binary's key, and its table, built or reused.

import (
	"debug/elf"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"time"

	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/symbolize/objfile"
	"github.com/emberprof/ember/unwind"
)

// mapping returns the unwind_mapping of one executable file mapping of
// process pid and the table it uses (nil for a frame-pointer mapping), with
// a reference taken.
//
// It is the tracer's ELF boundary: everything read from the file happens
// inside it, and a panic there (a binary some parser does not survive)
// costs this file its table and nothing else. The mapping is walked with
// frame pointers, the file is counted (UnwindStats.BadBinaries) and logged
// once, and not read again for other processes.
func (u *unwinder) mapping(pid uint32, m *proc.Mapping) (um unwind.Mapping, lt *loadedTable, err error) {
	fp := unwind.Mapping{Start: m.Start, End: m.Limit, Flags: unwind.MappingFramePointers}
	bad := badFile{m.Dev, m.Inode}
	if u.isBad(bad) {
		return fp, nil, fmt.Errorf("%s: %w", m.Path, errBadBinary)
	}
	defer func() {
		if r := recover(); r != nil {
			if lt != nil {
				u.release([]*loadedTable{lt})
			}
			um, lt, err = fp, nil, u.recovered(bad, m.Path, r)
		}
	}()
	if testHookMapping != nil {
		testHookMapping(m)
	}
	var file *objfile.File
	if m.Path == objfile.VDSOPath {
		if file, err = u.vdso(m.Limit - m.Start); err != nil {
			return fp, nil, err
		}
	} else {
		// The file as the process table holds it: opened, and its ELF
		// parsed, once per run for every process that maps it and for
		// the symbolizer too (objfile.Cache).
		if file, err = u.procs.Object(int(pid), m); err != nil {
			return fp, nil, err
		}
		defer file.Release()
	}
	ef, err := file.ELF()
	if err != nil {
		return fp, nil, err
	}
	bias, err := unwind.Bias(ef, m.Start, m.Offset)
	if err != nil {
		return fp, nil, err
	}
	fp.Bias = bias
	key := file.Key()
	u.mu.Lock()
	lt = u.tables[key]
	if lt != nil {
		lt.refs++
	}
	u.mu.Unlock()
	if lt == nil {
		t, err, ok := u.cache.Get(key)
		if !ok {
			build := func() (*unwind.Table, error) {
				if testHookBuild != nil {
					testHookBuild(m.Path)
				}
				start := time.Now()
				// In its map form only: what place and the copies' views
				// read.
				t, err := buildTableCached(key, ef)
				u.mu.Lock()
				u.stats.Built++
				u.stats.BuildTime += time.Since(start)
				u.mu.Unlock()
				return t, err
			}
			if m.Path != objfile.VDSOPath && frameSourceBytes(ef) > largeTableSource {
				if wait, start := u.waitForBuild(key, pid); wait {
					if start {
						u.buildInBackground(key, m.Path, file, build)
					}
					return fp, nil, fmt.Errorf("%s: %w", m.Path, errTableBuilding)
				}
			}
			t, err = u.cache.GetOrBuild(key, build)
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
		if errors.Is(err, unwind.ErrInternal) {
			// A parser panicked on this binary and recovered: the same
			// cost, count and log as a panic met here.
			return fp, nil, u.recovered(bad, m.Path, err)
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

// vdso returns the vDSO image, read once from Ember's own memory
// (objfile.OwnVDSO): the kernel maps the same image into every process of
// its architecture. A mapping of another size (a 32-bit process's vDSO) is
// not that image.
func (u *unwinder) vdso(size uint64) (*objfile.File, error) {
	f, err := objfile.OwnVDSO()
	if err != nil {
		return nil, err
	}
	if n := uint64(len(f.Image())); size != n {
		return nil, fmt.Errorf("vDSO of %d bytes, Ember's has %d", size, n)
	}
	return f, nil
}

// errBadBinary is the error of a mapping whose file once panicked a parser.
var errBadBinary = errors.New("a binary that could not be read before (see the first error logged for it)")

// maxBadFiles bounds the files remembered as bad; past it they are forgotten
// and read (and recovered from) again.
const maxBadFiles = 4096

// badFile identifies a file that panicked a parser: the device and inode of
// its mappings.
type badFile struct{ dev, inode uint64 }

func (u *unwinder) isBad(f badFile) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.bad[f]
}

// recovered turns the panic r, met reading the file of a mapping, into its
// error: the file is counted, remembered as bad and logged, once.
func (u *unwinder) recovered(f badFile, path string, r any) error {
	err := fmt.Errorf("%s: unwind table: %w: %v", path, errBadBinary, r)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.bad[f] {
		return err
	}
	if len(u.bad) >= maxBadFiles {
		clear(u.bad)
	}
	u.bad[f] = true
	u.stats.BadBinaries++
	if _, ok := r.(error); ok {
		// Recovered inside package unwind, which said where.
		slog.Warn("a binary could not be read for unwind tables; its code is walked with frame pointers", "file", path, "err", r)
	} else {
		slog.Warn("a binary could not be read for unwind tables; its code is walked with frame pointers", "file", path, "panic", r, "stack", string(debug.Stack()))
	}
	return err
}

// testHookBuild, if set, is called with a mapping's path before its table
// is built: tests hold a build in it.
var testHookBuild func(path string)

// testHookMapping, if set, is called by mapping with each file mapping
// before it is read: tests panic in it to stand for a parser that does.
var testHookMapping func(m *proc.Mapping)

// Large tables are built in the background: a worker that built libLLVM's
// or a large Go binary's table itself (a second or more on a loaded
// machine) kept every other process's load waiting behind it, and their
// samples meanwhile are stack copies, which the kernel drops (walking with
// frame pointers) once their ring is full and the drain gives up on after
// stackCopyWait: a 50 ms program started while Ember loaded a Go test
// binary's tables lost its samples that way. A load that needs such a table
// writes no entry; the table's build asks for the loads of every process that waited for it when done.

// largeTableSource is the size of frame information (.eh_frame,
// .debug_frame, .gopclntab) above which a binary's table is built in the
// background (one at a time, beside the two workers): libc's .eh_frame is 150 KiB and a small Go program's
// .gopclntab 600 KiB (built in the worker); qemu's .eh_frame is 1.1 MiB,
// libLLVM's 6 MiB and Ember's own .gopclntab 8 MiB (in the background).
const largeTableSource = 1 << 20

// errTableBuilding is load's error while a table it needs is built in the
// background: no entry is written, and the build asks for the load again.
var errTableBuilding = errors.New("unwind table being built in the background")

// frameSourceBytes is the size of the sections a table of ef is built from.
func frameSourceBytes(ef *elf.File) uint64 {
	var n uint64
	for _, name := range []string{".eh_frame", ".debug_frame", ".gopclntab"} {
		if s := ef.Section(name); s != nil {
			n += s.Size
		}
	}
	return n
}

// maxBackgroundBuilt bounds the keys remembered as built in the background.
const maxBackgroundBuilt = 4096

// waitForBuild reports whether pid's load leaves the table of key to the
// background builder (wait), and whether this call is to start its build
// (start): pid waits unless the table was built in the background before
// (and has been evicted from the cache since: it is then built in the
// worker, so that no load waits for ever).
func (u *unwinder) waitForBuild(key string, pid uint32) (wait, start bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.builtBefore[key] {
		return false, false
	}
	pids, building := u.building[key]
	if !slices.Contains(pids, pid) {
		u.building[key] = append(pids, pid)
	}
	u.stats.Deferred++
	return true, !building
}

// buildInBackground starts the build of the table of key from file (held
// until built) and places it in the maps. The tracer's close waits for it: it writes the table's file
// into the cache directory. One that has not started when the tracer
// closes builds nothing.
func (u *unwinder) buildInBackground(key, path string, file *objfile.File, build func() (*unwind.Table, error)) {
	held := file.Ref()
	u.wg.Add(1) // a worker's job calls this: the count is above 0
	go func() {
		defer u.wg.Done()
		defer u.builtInBackground(key)
		defer held.Release()
		select {
		case <-u.done:
			return
		case u.builder <- struct{}{}: // one at a time
		}
		defer func() { <-u.builder }()
		select {
		case <-u.done:
			return
		default:
		}
		// Placed in the maps at once (and kept there unused until a load
		// takes it): a table larger than the cache's budget is not kept
		// in it, and would be built again by the load.
		if t, err := u.cache.GetOrBuild(key, build); err == nil {
			if t.Go != nil {
				u.mu.Lock()
				u.stats.GoTables++
				u.stats.GoBadFuncs += t.Go.BadFuncs
				u.mu.Unlock()
			}
			if lt, err := u.place(key, t, path); err == nil {
				u.release([]*loadedTable{lt})
			}
		}
	}()
}

// builtInBackground asks again for the loads that waited for the table of
// key, now in the cache.
func (u *unwinder) builtInBackground(key string) {
	u.mu.Lock()
	pids := u.building[key]
	delete(u.building, key)
	if len(u.builtBefore) >= maxBackgroundBuilt {
		clear(u.builtBefore)
	}
	u.builtBefore[key] = true
	u.mu.Unlock()
	for _, pid := range pids {
		// Until its entry is written, every sample of pid is a copy
		// waiting for this load.
		u.enqueueUrgent(pid)
	}
}
