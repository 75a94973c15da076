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

// startTime returns the start time of a process in clock ticks after boot
// (field 22 of /proc/PID/stat, proc(5)), or 0 if it cannot be read.
func startTime(dir string) uint64 {
	_, start := readStat(dir)
	return start
}

// readStat returns the state (field 3) and start time (field 22) of
// /proc/PID/stat, or 0s. The comm field before them is in parentheses and
// may hold spaces and parentheses itself, so fields are counted after the
// last ')'.
func readStat(dir string) (state byte, start uint64) {
	b, err := readSmall(filepath.Join(dir, "stat"), 4096)
	if err != nil {
		return 0, 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0
	}
	v, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, 0
	}
	return f[0][0], v
}

// alive reports whether p still runs under its PID: its /proc directory is
// there, it is not a zombie (exited, not yet reaped), and when its start
// time was read, it has the same start time.
func (t *Table) alive(p *Process) bool {
	dir := filepath.Join(t.root, strconv.Itoa(p.PID))
	state, st := readStat(dir)
	if state == 'Z' || state == 'X' {
		return false
	}
	if st == 0 {
		// No stat file: gone (or a test's fake /proc without one, where
		// the maps file tells).
		_, err := readSmall(filepath.Join(dir, "maps"), 1)
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
