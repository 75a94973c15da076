package tracer

// The ELF side of the unwinder: the file behind one executable mapping (or
// the vDSO image), its binary's key, and its table, built or reused.

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
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
			start := time.Now()
			t, err = u.cache.GetOrBuild(key, func() (*unwind.Table, error) {
				// In its map form only: what place and the copies' views
				// read.
				return buildTableCached(key, ef)
			})
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

// testHookMapping, if set, is called by mapping with each file mapping
// before it is read: tests panic in it to stand for a parser that does.
var testHookMapping func(m *proc.Mapping)
