package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
)

// Mappings recorded as they happen (the tracer's perf mmap2 records, as
// perf record keeps them): an exec starts a process afresh, and every
// executable mapping after it is added at the moment it is made, with its
// file held at once. /proc/PID/maps is then never raced: a process that maps
// libc and exits 20 ms later is known whole, and its files were held while
// it lived. Processes that started before Ember are read from /proc (Add),
// and later records add to that reading.

// Exec starts pid afresh after an exec (its exec record): no mappings yet,
// the name the kernel gave it, and what /proc says of it now (its cgroup,
// namespace PID, exe), read while it certainly lives. The old image is kept
// as PreExec, with its files held, until the next exec or the process is
// forgotten: samples taken before the exec are built after it. A process outside the table's scope is forgotten instead
// (its PID named one of the scope before), and Exec reports false; one
// already gone (no cgroup to read) is taken as the known process's exec:
// its records are what #15's short processes are known by.
func (t *Table) Exec(pid int, comm string) bool {
	dir := filepath.Join(t.root, strconv.Itoa(pid))
	cgroup := readCgroup(filepath.Join(dir, "cgroup"))
	if cgroup != "" && !t.inScope(cgroup) {
		t.forget(pid)
		return false
	}
	stat := readStat(dir)
	p := &Process{PID: pid, NSPID: readNSPID(filepath.Join(dir, "status"), pid), start: stat.start, startStack: stat.startStack,
		Comm: comm, recorded: true, Cgroup: cgroup, Container: ParseContainer(cgroup)}
	p.Exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.procs[pid]; old != nil {
		// Its references pass to p (preHeld); only those of the image
		// before it are released.
		pre := *old
		pre.PreExec, pre.held, pre.preHeld = nil, nil, nil
		p.PreExec, p.preHeld = &pre, old.held
		t.release(&Process{held: old.preHeld})
	}
	t.procs[pid] = p
	return true
}

// Recorded reports whether pid's mappings are known from its exec on
// (Exec), so that reading /proc/PID/maps again adds nothing a record did
// not say.
func (t *Table) Recorded(pid int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.procs[pid]
	return p != nil && p.recorded
}

// Fork gives child, a new process (not a thread), the mappings of parent as
// they are known: a fork copies the address space, and records follow only
// its changes. The child holds its own references to the files. It reports
// whether the child was added: parent was known, and the child is in the
// table's scope (the parent's PID may name another process by now, and a
// stale entry must not bring that one's children in).
func (t *Table) Fork(parent, child int) bool {
	dir := filepath.Join(t.root, strconv.Itoa(child))
	var cgroup string
	if t.scope != nil {
		if t.Get(parent) == nil {
			return false
		}
		if cgroup = readCgroup(filepath.Join(dir, "cgroup")); cgroup != "" && !t.inScope(cgroup) {
			t.forget(child)
			return false
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	pp := t.procs[parent]
	if pp == nil {
		return false
	}
	c := *pp
	// The child's image is its parent's now; what the parent ran before
	// its own exec is not the child's.
	c.PID, c.exited, c.PreExec, c.preHeld = child, false, nil, nil
	if cgroup != "" {
		c.Cgroup, c.Container = cgroup, ParseContainer(cgroup)
	}
	c.Mappings = slices.Clone(pp.Mappings)
	c.held = slices.Clone(pp.held)
	for _, k := range c.held {
		if h := t.files[k]; h != nil {
			h.refs++
		}
	}
	// startStack stays the parent's, whose image c.Mappings are: a child
	// that exec'd already has a stack of its own, and SameImage then keeps
	// its parent's mappings out of its unwind entry.
	c.start = readStat(dir).start
	c.NSPID = readNSPID(filepath.Join(dir, "status"), child)
	if old := t.procs[child]; old != nil {
		t.release(old)
	}
	t.procs[child] = &c
	return true
}

// Mapped adds m, an executable mapping just made in pid (its mmap record),
// and holds its file now, while the process most likely lives: f, if the
// caller opened it already (to learn its device and inode from it, where
// the record gave a build ID instead), else opened here. It replaces what m
// overlaps (a MAP_FIXED mapping over an older one). The process is replaced
// by a copy (readers of the old one see it unchanged). It returns an error
// when pid is not known (read it whole with Add). f is the table's, or
// closed, in every case.
func (t *Table) Mapped(pid int, m Mapping, f *os.File) error {
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.procs[pid]
	if old == nil {
		return fmt.Errorf("process %d: %w", pid, os.ErrNotExist)
	}
	p := *old
	p.Mappings = insertMapping(old.Mappings, m)
	if k := (fileKey{m.Dev, m.Inode}); m.Inode != 0 && !slices.Contains(p.held, k) {
		held := true
		switch h := t.files[k]; {
		case h != nil:
			h.refs++
		case f != nil:
			of, err := t.cache.Add(f, m.Path) // the cache owns f
			f = nil
			if held = err == nil; held {
				t.files[k] = &heldFile{f: of, refs: 1}
			}
		default:
			_, held = t.hold(pid, &m)
		}
		if held {
			p.held = append(slices.Clone(old.held), k)
		}
	}
	t.procs[pid] = &p
	return nil
}

// insertMapping returns a new sorted list with m in place of what it
// overlaps: mappings partly covered keep their parts outside m (with their
// file offsets moved along), as the kernel splits them.
func insertMapping(ms []Mapping, m Mapping) []Mapping {
	out := make([]Mapping, 0, len(ms)+2)
	for _, o := range ms {
		if o.Limit <= m.Start || o.Start >= m.Limit {
			out = append(out, o)
			continue
		}
		if o.Start < m.Start {
			lo := o
			lo.Limit = m.Start
			out = append(out, lo)
		}
		if o.Limit > m.Limit {
			hi := o
			hi.Start = m.Limit
			if hi.Inode != 0 {
				hi.Offset += m.Limit - o.Start
			}
			out = append(out, hi)
		}
	}
	out = append(out, m)
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}

// merge adds to p, a reading of /proc/PID/maps, the mappings of old (a
// recorded process) that the reading does not overlap: a record may have
// been applied after the reading was made. t.mu is held.
func mergeRecorded(p, old *Process) {
	ms := p.Mappings
	for _, m := range old.Mappings {
		i := sort.Search(len(ms), func(i int) bool { return ms[i].Limit > m.Start })
		if i < len(ms) && ms[i].Start < m.Limit {
			continue
		}
		ms = insertMapping(ms, m)
	}
	p.Mappings = ms
	p.recorded = true
	if p.Comm == "" {
		p.Comm = old.Comm
	}
}
