package tracer

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/unwind"
)

// The load of a process's unwind_procs entry: its mappings' tables built or
// found, the entry encoded and written, and what was written handed to the
// stack copies that waited for it.

// loadedEntry is an unwind_procs entry a load wrote, the mappings' key
// (mapsKey) it was built from, and the tables it names. The copies waiting for the load are walked
// with it, not with a reading of the map back: the mappings' records, read
// a moment later, may have deleted the entry again (invalidate), and a
// process of 50 ms is gone before the next load, its copies with it.
type loadedEntry struct {
	entry  []byte
	key    string
	tables map[uint32]string // the keys of the tables it names, by id
}

// load writes the unwind_procs entry of pid, building and loading the
// tables of its executable mappings first, so that the kernel never sees an
// entry that points at a table not yet written.
func (u *unwinder) load(pid uint32) (*loadedEntry, error) {
	w, err := u.loadImage(pid)
	if errors.Is(err, errOtherImage) {
		// Once, with the mappings of the image it runs now: copies of its
		// stack wait for this load, and no record may come to ask again
		// (the exec's was applied before this reading).
		if _, aerr := u.procs.Add(int(pid)); aerr != nil {
			return nil, errNoMappings
		}
		if w, err = u.loadImage(pid); errors.Is(err, errOtherImage) {
			err = errNoMappings // exec'd again meanwhile: its record asks
		}
	}
	return w, err
}

// errOtherImage is loadImage's error for mappings of an image the process
// has exec'd away from (proc.Table.SameImage).
var errOtherImage = errors.New("mappings of an image the process left")

// loadImage is load with the process's mappings as the table has them. It
// returns the entry it wrote, nil if it left the one there.
func (u *unwinder) loadImage(pid uint32) (*loadedEntry, error) {
	p := u.procs.Get(int(pid))
	if p == nil {
		return nil, fmt.Errorf("process %d not known", pid)
	}
	if len(p.Mappings) == 0 {
		// Exec'd, its mappings not recorded yet: an entry without them
		// would stop every walk at its first frame, where no entry has the
		// samples copied (stackcopy.go).
		return nil, errNoMappings
	}
	if u.librariesPending(pid, p) {
		return nil, errLibrariesPending // each library's record asks again
	}
	mk := mapsKey(p)
	u.mu.Lock()
	w, ok := u.written[pid]
	same := ok && w == mk
	gen := u.gen[pid]
	u.mu.Unlock()
	if same {
		// The kernel drops the entry at an exec (process_exec), which
		// can come after a reading of the new image taken mid-exec and
		// loaded: the entry is then written again.
		e, err := u.objs.UnwindProcs.LookupBytes(pid)
		same = err == nil && e != nil // nil: no such key
	}
	if same {
		// Nothing new mapped (a walk met JIT or anonymous code): leave the
		// entry, and its stale flag, as they are, so it asks no more.
		return nil, nil
	}
	var (
		ms       []unwind.Mapping
		used     []*loadedTable
		building bool // a table is built in the background: no entry yet
	)
	for i := 0; i < len(p.Mappings); i++ {
		select {
		case <-u.done:
			return nil, errors.New("tracer closing")
		default:
		}
		// Re-read meanwhile (the exec after a fork: the child's first
		// reading is of Ember's own image, and building its table would
		// keep the new program's samples on frame pointers): start over
		// with the newest reading, keeping nothing from the old.
		if q := u.procs.Get(int(pid)); q != nil && q != p {
			u.release(used)
			p, mk, ms, used, building, i = q, mapsKey(q), nil, nil, false, -1
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
		um, lt, err := u.mapping(pid, m)
		if errors.Is(err, errTableBuilding) {
			building = true // the other mappings' builds go on meanwhile
			continue
		}
		if err != nil {
			slog.Debug("unwind table", "pid", pid, "file", m.Path, "err", err)
		}
		if lt != nil {
			used = append(used, lt)
		}
		ms = append(ms, um)
	}
	if building {
		u.release(used)
		return nil, errTableBuilding
	}
	if len(ms) > unwind.MaxMappings {
		ms = ms[:unwind.MaxMappings]
	}
	if len(ms) == 0 {
		u.release(used)
		return nil, errNoMappings
	}
	if !u.procs.SameImage(p) {
		// Exec'd since its mappings were read: an entry of them would
		// walk the new image with the old one's tables until the exec's
		// record is read (seconds on a loaded machine; the kernel dropped
		// the entry at the exec). Load from a reading of the new image.
		u.release(used)
		return nil, errOtherImage
	}
	b, err := unwind.EncodeProc(ms)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.gen[pid] != gen {
		// Exec'd or mapped more since this load began (invalidate): its
		// entry stays deleted, and the load asked for then writes it.
		for _, lt := range used {
			lt.refs--
		}
		return nil, errNoMappings
	}
	if err == nil {
		err = u.objs.UnwindProcs.Put(pid, b)
	}
	old := u.pids[pid]
	if err != nil {
		used, old = old, used // keep the old entry's references
	}
	u.pids[pid] = used
	for _, lt := range old {
		lt.refs--
	}
	if err != nil {
		return nil, fmt.Errorf("write unwind_procs[%d]: %w", pid, err)
	}
	u.written[pid] = mk
	slog.Debug("unwind tables loaded", "pid", pid, "mappings", len(ms), "tables", len(used))
	return &loadedEntry{entry: b, key: mk, tables: tableKeys(used)}, nil
}

// tableKeys maps the ids of tables lts to their keys: what a view of an
// entry that names them needs (unwinder.viewOf), taken with the entry, as
// the process's tables can change (a load) or go (its exit's unload) right
// after.
func tableKeys(lts []*loadedTable) map[uint32]string {
	m := make(map[uint32]string, len(lts))
	for _, lt := range lts {
		m[lt.id] = lt.key
	}
	return m
}

// release drops references taken by mapping.
func (u *unwinder) release(lts []*loadedTable) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, lt := range lts {
		lt.refs--
	}
}

// mapsKey identifies the executable mappings of p.
func mapsKey(p *proc.Process) string {
	var b []byte
	for _, m := range p.Mappings {
		b = fmt.Appendf(b, "%x-%x:%x:%d;", m.Start, m.Limit, m.Offset, m.Inode)
	}
	return string(b)
}

// unload deletes pid's entry and drops its references.
