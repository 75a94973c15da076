package proc

import (
	"bytes"
	"path/filepath"
	"strconv"
)

// A process's exit is normally told by the tracer's exit event; an event can
// be lost (a full ring buffer), and then the process, its held files and its
// unwind entry would stay for ever. Gone finds such processes by looking at
// /proc: the process is gone when its directory is, or when its PID now
// names another process (started at another time).

// procStat is what Ember reads of /proc/PID/stat (proc(5)).
type procStat struct {
	state byte   // field 3: R, S, D, Z, ...
	start uint64 // field 22: start time, clock ticks after boot
	// startStack (field 28) is the address of the bottom of the stack,
	// placed anew (randomized) by every exec: it tells one image of a
	// process from the next, where the PID and the start time do not.
	startStack uint64
}

// readStat reads dir's stat file, or returns zeros. The comm field is in
// parentheses and may hold spaces and parentheses itself, so fields are
// counted after the last ')'.
func readStat(dir string) procStat {
	var st procStat
	withSmall(filepath.Join(dir, "stat"), 4096, func(b []byte) {
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			return
		}
		// f is field 3 (the state) on; fields 22 and 28 are read.
		for n, f := 3, b[i+1:]; n <= 28; n++ {
			var field []byte
			field, f = nextField(f)
			switch {
			case len(field) == 0:
				if n <= 22 {
					st = procStat{}
				}
				return
			case n == 3 && len(field) != 1:
				return
			case n == 3:
				st.state = field[0]
			case n == 22:
				st.start, _ = strconv.ParseUint(string(field), 10, 64)
			case n == 28:
				st.startStack, _ = strconv.ParseUint(string(field), 10, 64)
			}
		}
	})
	return st
}

// nextField splits the first space-separated field off b.
func nextField(b []byte) (field, rest []byte) {
	b = bytes.TrimLeft(b, " \n")
	i := bytes.IndexAny(b, " \n")
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i:]
}

// SameImage reports whether p's mappings are still those of the image its
// process runs: false only when the process has exec'd since they were read
// (its stack was placed anew), so that an unwind entry built from them would
// walk the new image with the old image's tables. An unknown either way
// (an old reading, a gone process) counts as the same.
func (t *Table) SameImage(p *Process) bool {
	if p.startStack == 0 {
		return true
	}
	now := readStat(filepath.Join(t.root, strconv.Itoa(p.PID))).startStack
	return now == 0 || now == p.startStack
}

// alive reports whether p still runs under its PID: its /proc directory is
// there, it is not a zombie (exited, not yet reaped), and when its start
// time was read, it has the same start time.
func (t *Table) alive(p *Process) bool {
	dir := filepath.Join(t.root, strconv.Itoa(p.PID))
	stat := readStat(dir)
	state, st := stat.state, stat.start
	if state == 'Z' || state == 'X' {
		return false
	}
	if st == 0 {
		// No stat file: gone (or a test's fake /proc without one, where
		// the maps file tells).
		err := withSmall(filepath.Join(dir, "maps"), 1, func([]byte) {})
		return err == nil && p.start == 0
	}
	return p.start == 0 || st == p.start
}

// Gone returns the processes the table holds, not marked exited, that no
// longer run: their exit was missed. The caller treats them as exited
// (MarkExited, after their last samples were read).
func (t *Table) Gone() []int {
	t.mu.Lock()
	ps := make([]*Process, 0, len(t.procs))
	for _, p := range t.procs {
		if !p.exited {
			ps = append(ps, p)
		}
	}
	t.mu.Unlock()
	var gone []int
	for _, p := range ps {
		if !t.alive(p) {
			gone = append(gone, p.PID)
		}
	}
	return gone
}

// Alive reports whether what the table knows of pid is a process that
// still runs; false for a PID it does not know.
func (t *Table) Alive(pid int) bool {
	p := t.Get(pid)
	return p != nil && t.alive(p)
}

// Held returns the number of files the table holds open.
func (t *Table) Held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.files)
}
