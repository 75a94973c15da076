package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/emberprof/ember/symbolize/objfile"
)

// Process is what Ember knows of one process, read while it lived.
type Process struct {
	PID       int
	NSPID     int       // the PID the process sees in its own PID namespace (NSpid); PID outside one
	Comm      string    // /proc/PID/comm
	Exe       string    // /proc/PID/exe target
	Cgroup    string    // cgroup v2 path, "" when unknown
	Container Container // the container and pod its cgroup names, if any
	Mappings  []Mapping // executable file and anonymous mappings, sorted by Start

	// PreExec is the image the process ran before its last exec, as it
	// was then (nil: none known). A sample taken before the exec (a
	// shell's fork child, sampled while it still ran the shell's code)
	// carries that image's addresses but is built after the exec: it
	// is resolved against PreExec, not against the new image, in which
	// its addresses mean nothing.
	PreExec *Process

	held    []fileKey // the files this process holds a reference to
	preHeld []fileKey // those of PreExec's image, held for its samples
	exited  bool
	// recorded: its mappings are known from its exec on, from the
	// tracer's mmap records (record.go).
	recorded bool
	start    uint64 // start time, clock ticks after boot (0: unknown)
	// startStack identifies the image Mappings belong to (procStat), read
	// before them: 0 unknown.
	startStack uint64
}

// Find returns the mapping that contains addr, or nil.
func (p *Process) Find(addr uint64) *Mapping {
	ms := p.Mappings
	i := sort.Search(len(ms), func(i int) bool { return ms[i].Limit > addr })
	if i < len(ms) && ms[i].Start <= addr {
		return &ms[i]
	}
	return nil
}

type fileKey struct{ dev, inode uint64 }

// Table keeps processes and holds each executable file they map open, so
// that a binary that is deleted, or whose process exits, can still be read
// for symbols and unwind tables. Files are held in an objfile.Cache (one
// descriptor and one ELF parse per file, shared with the unwind-table
// builder and the symbolizer), with one reference per file for as long as
// a process the table knows maps it.
type Table struct {
	root  string // "/proc", replaceable in tests
	cache *objfile.Cache
	scope []string // cgroup paths the processes must be under (scope.go); nil: any

	mu    sync.Mutex
	procs map[int]*Process
	files map[fileKey]*heldFile
}

type heldFile struct {
	f    *objfile.File
	refs int // processes that map it
}

// NewTable returns an empty table reading from /proc, holding files in a
// cache of its own (Files).
func NewTable() *Table {
	return &Table{root: "/proc", cache: objfile.NewCache(0), procs: map[int]*Process{}, files: map[fileKey]*heldFile{}}
}

// Files is the cache the table holds mapped files in: give it to the
// symbolizer (symbolize.Options.Files) so that both read each file once.
func (t *Table) Files() *objfile.Cache { return t.cache }

// Add reads a process's mappings now (or again, after an exec) and opens the
// files it maps executable. It replaces what was known of pid.
func (t *Table) Add(pid int) (*Process, error) {
	dir := filepath.Join(t.root, strconv.Itoa(pid))
	// The cgroup first: a process outside the scope costs one small read.
	cgroup := readCgroup(filepath.Join(dir, "cgroup"))
	if !t.inScope(cgroup) {
		t.forget(pid)
		return nil, scopeErr(pid, cgroup)
	}
	// Before the maps: an exec in between then shows as another image
	// (SameImage), not as the new image's mappings under the old identity.
	stat := readStat(dir)
	f, err := os.Open(filepath.Join(dir, "maps"))
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	all, perr := ParseMaps(f)
	f.Close()
	if len(all) == 0 && perr != nil {
		return nil, fmt.Errorf("process %d: %w", pid, perr)
	}
	p := &Process{PID: pid, NSPID: readNSPID(filepath.Join(dir, "status"), pid), start: stat.start, startStack: stat.startStack}
	if b, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
		p.Comm = strings.TrimSpace(string(b))
	}
	p.Exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	p.Cgroup = cgroup
	p.Container = ParseContainer(p.Cgroup)
	for _, m := range all {
		if m.Executable() {
			p.Mappings = append(p.Mappings, m)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Hold the new mappings before releasing the old: a file in both keeps
	// its descriptor, which a reader may be opening at this moment.
	for i := range p.Mappings {
		if k, ok := t.hold(pid, &p.Mappings[i]); ok {
			p.held = append(p.held, k)
		}
	}
	if old := t.procs[pid]; old != nil {
		if old.recorded {
			// Records applied after this reading was made stay, with
			// their files.
			mergeRecorded(p, old)
			for _, k := range old.held {
				if h := t.files[k]; h != nil && !slices.Contains(p.held, k) {
					h.refs++
					p.held = append(p.held, k)
				}
			}
		}
		// The image before the exec stays known, for the samples taken
		// before it.
		p.PreExec = old.PreExec
		for _, k := range old.preHeld {
			if h := t.files[k]; h != nil {
				h.refs++
				p.preHeld = append(p.preHeld, k)
			}
		}
		t.release(old)
	}
	t.procs[pid] = p
	return p, nil
}

// hold opens the file behind m once per (dev, inode) and reports whether it
// took a reference. t.mu is held.
func (t *Table) hold(pid int, m *Mapping) (fileKey, bool) {
	if m.Inode == 0 {
		return fileKey{}, false
	}
	k := fileKey{m.Dev, m.Inode}
	if h := t.files[k]; h != nil {
		h.refs++
		return k, true
	}
	f, err := t.cache.Open(m.FileID(), m.Path, func() (*os.File, error) {
		if t.root != procRoot {
			// A test's fake /proc: its map_files only.
			return openMapFile(fmt.Sprintf("%s/%d/map_files/%x-%x", t.root, pid, m.Start, m.Limit))
		}
		return OpenMappedFile(pid, m)
	})
	if err != nil {
		// The mapping is gone: the process exec'd or unmapped it after
		// its maps were read. It holds no reference for it.
		slog.Debug("hold mapped file", "pid", pid, "file", m.Path, "err", err)
		return k, false
	}
	t.files[k] = &heldFile{f: f, refs: 1}
	return k, true
}

// release drops the references p took, and only those: a file p failed to
// hold may be held by another process (or by p's next reading, after an
// exec), and must stay open for it. t.mu is held.
func (t *Table) release(p *Process) {
	for _, k := range slices.Concat(p.held, p.preHeld) {
		if h := t.files[k]; h != nil {
			if h.refs--; h.refs <= 0 {
				h.f.Release()
				delete(t.files, k)
			}
		}
	}
}

// forget drops what is known of pid: its PID names another process now.
func (t *Table) forget(pid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.procs[pid]; old != nil {
		t.release(old)
		delete(t.procs, pid)
	}
}

// Get returns what is known of pid, or nil.
func (t *Table) Get(pid int) *Process {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.procs[pid]
}

// Object returns the file behind m, a mapping of process pid, referenced
// (the caller releases it): the one held since the process was first seen,
// so that it works after the process exited or the file was deleted, else
// one the cache still has open, else opened now by OpenMappedFile (a file
// the table could not hold then). It is how Ember opens a process's mapped
// files, for unwind tables and for symbols alike: each is opened and its
// ELF parsed once.
func (t *Table) Object(pid int, m *Mapping) (*objfile.File, error) {
	t.mu.Lock()
	h := t.files[fileKey{m.Dev, m.Inode}]
	if h != nil {
		h.f.Ref()
	}
	t.mu.Unlock()
	if h != nil {
		return h.f, nil
	}
	if m.Inode == 0 {
		return nil, fmt.Errorf("%s: an anonymous mapping: %w", m.Path, os.ErrNotExist)
	}
	return t.cache.Open(m.FileID(), m.Path, func() (*os.File, error) { return OpenMappedFile(pid, m) })
}

// Open returns a new descriptor of the file behind m, a mapping of process
// pid, as Object finds it (held, else opened now). The caller closes it. It
// is for readers that need a file of their own (an offset to read from);
// Object shares the one descriptor.
func (t *Table) Open(pid int, m *Mapping) (*os.File, error) {
	f, err := t.openHeld(m)
	if err == nil {
		return f, nil
	}
	if m.Inode == 0 {
		return nil, err
	}
	f, err2 := OpenMappedFile(pid, m)
	if err2 != nil {
		return nil, errors.Join(err, err2)
	}
	return f, nil
}

// openHeld reopens the descriptor held for m's file.
//
// It opens under the lock: a descriptor released meanwhile would be closed,
// and its number could already name another file.
func (t *Table) openHeld(m *Mapping) (*os.File, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.files[fileKey{m.Dev, m.Inode}]
	if h == nil {
		return nil, fmt.Errorf("%s: not held: %w", m.Path, os.ErrNotExist)
	}
	return os.Open(fmt.Sprintf("/proc/self/fd/%d", h.f.OS().Fd()))
}

// MarkExited notes that pid exited; Sweep forgets it.
func (t *Table) MarkExited(pid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.procs[pid]; p != nil {
		p.exited = true
	}
}

// Sweep forgets processes that exited, after their last samples were built.
func (t *Table) Sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for pid, p := range t.procs {
		if p.exited {
			t.release(p)
			delete(t.procs, pid)
		}
	}
}

// Len returns the number of processes known.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.procs)
}

// Close releases every held file and closes the cache.
func (t *Table) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range t.files {
		h.f.Release()
	}
	t.cache.Close()
	t.files = map[fileKey]*heldFile{}
	t.procs = map[int]*Process{}
}

// readNSPID returns the PID the process has in its innermost PID namespace:
// the last field of the NSpid line of /proc/PID/status (Linux 4.1), which
// starts with the PID in the namespace of the /proc mount. pid when the
// line is missing or malformed.
func readNSPID(name string, pid int) int {
	ns := pid
	withSmall(name, 64<<10, func(b []byte) {
		i := bytes.Index(b, []byte("\nNSpid:"))
		if i < 0 {
			return
		}
		line := b[i+len("\nNSpid:"):]
		if j := bytes.IndexByte(line, '\n'); j >= 0 {
			line = line[:j]
		}
		line = bytes.TrimSpace(line)
		if j := bytes.LastIndexAny(line, " \t"); j >= 0 {
			line = line[j+1:]
		}
		if n, err := strconv.Atoi(string(line)); err == nil && n > 0 {
			ns = n
		}
	})
	return ns
}

// smallBufs holds the buffers withSmall reads into. Every process's stat,
// status and cgroup files are read when it is seen, forks and execs;
// a buffer of its own for each read was a quarter of what a whole-system
// recording of a busy machine allocated, and so of its collector's work.
var smallBufs = sync.Pool{New: func() any { return new([]byte) }}

// withSmall reads at most limit bytes of a /proc file and hands them to use,
// which must not keep them. A /proc file gives its whole text to one read
// into a buffer big enough, so the buffer starts at 4 KiB (a status file is
// about 1.5 KiB) and grows only when filled.
func withSmall(name string, limit int, use func(b []byte)) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	bp := smallBufs.Get().(*[]byte)
	defer smallBufs.Put(bp)
	b := (*bp)[:0]
	for len(b) < limit {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(max(cap(b), 4096), limit-len(b)))
			*bp = b
		}
		n, err := f.Read(b[len(b):min(cap(b), limit)])
		b = b[:len(b)+n]
		if err == io.EOF || (err == nil && n == 0) {
			break
		}
		if err != nil {
			return err
		}
	}
	use(b)
	return nil
}

// readCgroup returns the cgroup v2 path of a /proc/PID/cgroup file ("0::/x").
func readCgroup(name string) string {
	cg := ""
	withSmall(name, 64<<10, func(b []byte) {
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			if rest, ok := bytes.CutPrefix(line, []byte("0::")); ok {
				cg = string(rest)
				return
			}
		}
	})
	return cg
}
