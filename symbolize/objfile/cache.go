package objfile

import (
	"bytes"
	"container/list"
	"debug/elf"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// Every mapped binary is read by two users: the tracer's unwind-table
// builder (its .eh_frame or .gopclntab) and the symbolizer (symbols, DWARF),
// and a library such as libc is mapped by every process. Cache holds each
// such file open once, with its ELF headers and sections parsed and its
// build IDs read once, for both users and for every process that maps it;
// each user keeps what it derives from the file (unwind rows, symbol
// indexes) in a cache of its own under the file's Key.
//
// A file is found before it is opened by the identity a mapping gives it
// (FileID: /proc/PID/maps, perf's mmap2 records), and after it is opened by
// its own (fstat) and by its Key, so that two paths to one binary (a
// container's layer and the host, or two containers) share one entry.
// Entries are reference counted: a holder (the process table, for the
// lifetime of the processes that map the file) keeps its file open;
// released entries wait in a least-recently-used list of at most maxIdle
// files, and are closed past it.

// FileID is how a mapping names its file before anyone opens it: the device
// and inode of /proc/PID/maps (and of perf's mmap2 records). While any
// process maps the file, or the cache holds it open, its inode cannot name
// another file.
type FileID struct{ Dev, Inode uint64 }

// File is one object file held open by a Cache: the descriptor, its
// identity, its parsed ELF headers and sections (debug/elf, reading through
// the descriptor) and its build IDs. Users share it: they read through the
// *elf.File or the descriptor's ReadAt (never Read, Seek or Close), and
// Release their reference when done.
type File struct {
	c      *Cache // nil for an image no cache holds (the vDSO)
	name   string
	f      *os.File
	st     os.FileInfo
	image  []byte // the image, for a file read from memory
	ef     *elf.File
	elfErr error
	gnu    string
	goid   string
	key    string

	// mu is held by a user calling a debug/elf method that caches what it
	// reads in the elf.File (Symbols and DynamicSymbols keep the version
	// tables): two such calls at once would race.
	mu sync.Mutex

	// Guarded by c.mu.
	ids    []FileID
	refs   int
	idle   *list.Element // in c.idle while refs == 0
	closed bool
}

// Name is the path the file was first opened by (errors, debug links).
func (f *File) Name() string { return f.name }

// ELF returns the file's parsed ELF headers and sections, or why it is not
// an ELF file. Section contents are read through the shared descriptor.
func (f *File) ELF() (*elf.File, error) { return f.ef, f.elfErr }

// BuildIDs returns the GNU build ID (hex) and the Go build ID, "" for each
// the file lacks (BuildIDs).
func (f *File) BuildIDs() (gnu, goid string) { return f.gnu, f.goid }

// Key is the file's cache key (Key): what every cache of what is derived
// from it (unwind tables, symbol tables) is keyed by.
func (f *File) Key() string { return f.key }

// Stat is what fstat said when the file was opened; nil for an image read
// from memory.
func (f *File) Stat() os.FileInfo { return f.st }

// OS is the shared descriptor, for ReadAt, Fd (mmap) and Stat only; nil for
// an image read from memory.
func (f *File) OS() *os.File { return f.f }

// Image is the file's bytes when it was read from memory (the vDSO), else nil.
func (f *File) Image() []byte { return f.image }

// Lock serializes users that call debug/elf methods which cache inside the
// elf.File (Symbols, DynamicSymbols); reading sections needs no lock.
func (f *File) Lock() { f.mu.Lock() }

// Unlock releases Lock.
func (f *File) Unlock() { f.mu.Unlock() }

// Ref takes another reference to f, to Release separately.
func (f *File) Ref() *File {
	if f.c == nil {
		return f
	}
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	f.c.refLocked(f)
	return f
}

// Release drops a reference. A file no one references waits in the cache's
// idle list, and is closed when it falls off its end.
func (f *File) Release() {
	if f.c == nil {
		return
	}
	c := f.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.refs <= 0 {
		panic("objfile: File released more often than referenced")
	}
	f.refs--
	if f.refs > 0 {
		return
	}
	if f.closed || c.closed {
		c.closeLocked(f)
		return
	}
	f.idle = c.idle.PushFront(f)
	for c.idle.Len() > c.maxIdle {
		c.closeLocked(c.idle.Back().Value.(*File))
	}
}

// Cache holds object files open once each (see above). It is safe for
// concurrent use.
type Cache struct {
	maxIdle int

	mu     sync.Mutex
	byID   map[FileID]*File
	byKey  map[string]*File
	idle   *list.List // of *File no one references, most recent first
	closed bool
	stats  CacheStats
}

// CacheStats counts what a Cache did.
type CacheStats struct {
	Files  int // open now
	Idle   int // open and referenced by no one
	Opened int // files opened for the cache (open calls that succeeded, and Adds)
	Parsed int // ELF headers parsed: one per file kept
	Hits   int // lookups answered by a file already open
	Shared int // files opened, found to be one already open (same identity or key) and closed again
}

// DefaultMaxIdle is how many files no one references a cache keeps open.
const DefaultMaxIdle = 256

// NewCache returns an empty cache keeping at most maxIdle unreferenced files
// open (DefaultMaxIdle if maxIdle <= 0).
func NewCache(maxIdle int) *Cache {
	if maxIdle <= 0 {
		maxIdle = DefaultMaxIdle
	}
	return &Cache{maxIdle: maxIdle, byID: map[FileID]*File{}, byKey: map[string]*File{}, idle: list.New()}
}

// Lookup returns the file held under id, referenced, opening nothing; ok
// is false when none is, or when the file changed in place since it was
// opened (its size or modification time), so that the caller opens it again.
func (c *Cache) Lookup(id FileID) (f *File, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lookupLocked(id)
}

func (c *Cache) lookupLocked(id FileID) (*File, bool) {
	f := c.byID[id]
	if f == nil {
		return nil, false
	}
	if f.changed() {
		c.forgetLocked(f)
		return nil, false
	}
	c.refLocked(f)
	c.stats.Hits++
	return f, true
}

// Open returns the file id names, referenced: the one held, else the file
// open returns, which the cache then owns. name is the path the file is
// known by. Files that prove to be one already held (the same inode, or the
// same build ID) are closed and the held one returned, with id its alias.
func (c *Cache) Open(id FileID, name string, open func() (*os.File, error)) (*File, error) {
	if f, ok := c.Lookup(id); ok {
		return f, nil
	}
	osf, err := open()
	if err != nil {
		return nil, err
	}
	return c.add(osf, name, id)
}

// Add takes osf, a file opened by the caller, which the cache owns from now
// on (it is closed here when it proves to be one already held), and returns
// its entry, referenced. name is the path it is known by.
func (c *Cache) Add(osf *os.File, name string) (*File, error) {
	return c.add(osf, name)
}

func (c *Cache) add(osf *os.File, name string, ids ...FileID) (*File, error) {
	st, err := osf.Stat()
	if err != nil {
		osf.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		osf.Close()
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		ids = append(ids, FileID{uint64(s.Dev), s.Ino})
	}
	c.mu.Lock()
	c.stats.Opened++
	for _, id := range ids {
		if f := c.byID[id]; f != nil && !f.changed() && sameFile(f.st, st) {
			c.refLocked(f)
			c.aliasLocked(f, ids)
			c.stats.Shared++
			c.mu.Unlock()
			osf.Close()
			return f, nil
		}
	}
	c.mu.Unlock()

	f := &File{c: c, name: name, f: osf, st: st}
	f.ef, f.elfErr = parseELF(osf, name)
	if f.ef != nil {
		f.gnu, f.goid = safeBuildIDs(f.ef)
	}
	f.key = Key(f.gnu, st)

	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.byKey[f.key]; old != nil && !old.changed() {
		// Another path to a binary already held (or a race with
		// another goroutine opening the same file): keep the one.
		c.refLocked(old)
		c.aliasLocked(old, ids)
		c.stats.Shared++
		osf.Close()
		return old, nil
	}
	if c.closed {
		osf.Close()
		return nil, fmt.Errorf("%s: object file cache closed", name)
	}
	c.stats.Parsed++
	f.refs = 1
	c.byKey[f.key] = f
	c.aliasLocked(f, ids)
	return f, nil
}

// Stats returns the cache's counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Files, s.Idle = len(c.byKey), c.idle.Len()
	return s
}

// Close closes every file no one references, and every other one as soon
// as its last reference is released.
func (c *Cache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for c.idle.Len() > 0 {
		c.closeLocked(c.idle.Back().Value.(*File))
	}
}

func (c *Cache) refLocked(f *File) {
	if f.refs == 0 && f.idle != nil {
		c.idle.Remove(f.idle)
		f.idle = nil
	}
	f.refs++
}

// aliasLocked makes ids names of f. An id that named another file names f
// now: that file changed or is gone from the mapping's view.
func (c *Cache) aliasLocked(f *File, ids []FileID) {
	for _, id := range ids {
		if old := c.byID[id]; old == f {
			continue
		} else if old != nil {
			old.ids = removeID(old.ids, id)
		}
		c.byID[id] = f
		f.ids = append(f.ids, id)
	}
}

// forgetLocked takes f out of the cache's indexes (it changed in place):
// its holders keep it, and it is closed when they release it.
func (c *Cache) forgetLocked(f *File) {
	c.unindexLocked(f)
	f.closed = true
	if f.refs == 0 {
		c.closeLocked(f)
	}
}

// closeLocked takes f out of the cache and closes its descriptor.
func (c *Cache) closeLocked(f *File) {
	if f.idle != nil {
		c.idle.Remove(f.idle)
		f.idle = nil
	}
	c.unindexLocked(f)
	f.closed = true
	if f.f != nil {
		f.f.Close()
	}
}

// unindexLocked removes f's FileIDs and key from the indexes, where they
// still name f.
func (c *Cache) unindexLocked(f *File) {
	for _, id := range f.ids {
		if c.byID[id] == f {
			delete(c.byID, id)
		}
	}
	f.ids = nil
	if c.byKey[f.key] == f {
		delete(c.byKey, f.key)
	}
}

// changed reports whether the file was rewritten in place since it was
// opened: fstat on the held descriptor, no open.
func (f *File) changed() bool {
	if f.f == nil {
		return false
	}
	st, err := f.f.Stat()
	return err != nil || !sameFile(st, f.st)
}

// sameFile reports whether a and b are one file with the same contents, as
// far as fstat tells: device, inode, size and modification time.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func removeID(ids []FileID, id FileID) []FileID {
	for i, x := range ids {
		if x == id {
			return append(ids[:i], ids[i+1:]...)
		}
	}
	return ids
}

// parseELF parses the ELF headers and sections of f, reading through its
// descriptor. debug/elf reads hostile headers in bounded chunks; a panic in
// it costs this file its ELF and nothing else.
func parseELF(f *os.File, name string) (ef *elf.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			ef, err = nil, fmt.Errorf("%s: ELF headers: %v", name, r)
		}
	}()
	ef, err = elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ef, nil
}

// safeBuildIDs is BuildIDs with a panic turned into no build IDs.
func safeBuildIDs(ef *elf.File) (gnu, goid string) {
	defer func() {
		if recover() != nil {
			gnu, goid = "", ""
		}
	}()
	return BuildIDs(ef)
}

// ownVDSO is the vDSO image of Ember's own process, read and parsed once.
var ownVDSO = sync.OnceValues(func() (*File, error) {
	b, err := ReadOwnVDSO()
	if err != nil {
		return nil, err
	}
	ef, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("own vDSO: %w", err)
	}
	f := &File{name: VDSOPath, image: b, ef: ef}
	f.gnu, f.goid = safeBuildIDs(ef)
	f.key = VDSOPath
	if f.gnu != "" {
		f.key = BuildIDKey(f.gnu)
	}
	return f, nil
})

// OwnVDSO returns the vDSO image mapped into Ember's own process
// (ReadOwnVDSO) as a File, read and parsed once per run for the unwind-table
// builder and the symbolizer; it holds no descriptor (Image has its bytes),
// and Ref and Release do nothing.
func OwnVDSO() (*File, error) { return ownVDSO() }
