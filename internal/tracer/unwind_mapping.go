package tracer

// The ELF side of the unwinder: the file behind one executable mapping (or
// the vDSO image), its binary's key, and its table, built or reused.

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/unwind"
)

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
