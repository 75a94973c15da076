package symbolize

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/symbolize/objfile"
)

// Options configures a Symbolizer. The zero value is usable.
type Options struct {
	// CacheBytes is the byte budget of the object cache; 0 means 256 MiB.
	CacheBytes int64
	// Open opens the file of a mapping; nil means os.Open(m.File). The
	// symbolizer closes the file (or gives it to Files, which keeps it
	// open once). An agent opens a process's files safely (internal/proc's
	// Table) and keeps track of which process each mapping came from.
	Open Opener
	// OpenObject, if set, gives the object file of a mapping as Files
	// holds it, so that a file the agent holds is neither opened nor
	// parsed again; Open serves what it does not give (perf maps, and
	// objects it fails on).
	OpenObject ObjectOpener
	// Files holds the object files read, one descriptor and one ELF parse
	// each; an agent passes the one its process table and unwind-table
	// builder use (proc.Table.Files). nil: a cache of the symbolizer's own.
	Files *objfile.Cache
	// KallsymsPath is the kernel symbol file; "" means /proc/kallsyms.
	KallsymsPath string
	// DebugDirs are searched for separate debug files; nil means /usr/lib/debug.
	DebugDirs []string
	// DebugSource fetches what is not found locally (debuginfod); nil
	// means nothing is fetched.
	DebugSource DebugSource
}

// Symbolizer fills profiles with frames. It caches what it reads and is safe
// for concurrent use.
type Symbolizer struct {
	opts     Options
	cache    *objectCache
	files    *objfile.Cache
	ownFiles bool

	parsed         atomic.Int64 // objects indexed, for tests of the cache
	kallsymsPasses atomic.Int64 // reads of kallsyms, likewise
	kernel         kernelSpans

	mu       sync.Mutex
	perfMaps map[string]perfMapEntry

	vdsoOnce sync.Once
	vdso     *Object // the kernel's vDSO image, read from Ember's memory
	vdsoSize uint64
	vdsoErr  error
}

type perfMapEntry struct {
	size  int64
	mtime time.Time
	m     *perfMap
}

// New returns a Symbolizer.
func New(opts Options) *Symbolizer {
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = 256 << 20
	}
	if opts.KallsymsPath == "" {
		opts.KallsymsPath = "/proc/kallsyms"
	}
	if opts.DebugDirs == nil {
		opts.DebugDirs = []string{defaultDebugDir}
	}
	s := &Symbolizer{opts: opts, cache: newObjectCache(opts.CacheBytes), files: opts.Files, perfMaps: make(map[string]perfMapEntry)}
	if s.files == nil {
		s.files, s.ownFiles = objfile.NewCache(0), true
	}
	return s
}

// Close releases every cached object, and the files of a cache of its own.
func (s *Symbolizer) Close() error {
	s.cache.close()
	if s.ownFiles {
		s.files.Close()
	}
	return nil
}

// CacheStats returns the number of objects cached and their estimated bytes.
func (s *Symbolizer) CacheStats() (objects int, bytes int64) { return s.cache.stats() }

// GiveBack drops the resident pages of the cached objects' mappings: the
// binaries and debug files they map and the decompressed sections spilled
// to files (spill.go). The pages are clean copies of files, read in again
// from the page cache when a later lookup touches them; kept, a long-running
// caller (the agent) holds every page any lookup ever touched: 11 MiB of
// glibc's debug file and its spilled sections in the agent's soak, a sixth
// of a 64 MiB --memory-limit, for lookups that touch a few units per
// interval. The agent calls it after each interval's symbolization.
func (s *Symbolizer) GiveBack() { s.cache.giveBack() }

// Symbolize fills Line (and Function) for every Location of p that has none
// yet, one pass per mapping over its sorted addresses. It fills
// Mapping.BuildID when empty and the mapping's Has* flags. A mapping whose
// file cannot be opened or parsed keeps its bare addresses; its error, naming
// the file, is returned joined with the others, and the other mappings are
// still symbolized.
func (s *Symbolizer) Symbolize(p *profile.Profile) error {
	return s.SymbolizeFrom(p, s.opts.Open, s.opts.OpenObject)
}

// Opener opens the file behind a mapping of a profile; the symbolizer
// closes it. nil opens m.File.
type Opener func(m *profile.Mapping) (*os.File, error)

// ObjectOpener returns the object file behind a mapping of a profile from
// the symbolizer's Files, with a reference the symbolizer releases.
type ObjectOpener func(m *profile.Mapping) (*objfile.File, error)

// SymbolizeWith is Symbolize with the files of p's mappings opened by open
// instead of Options.Open. Which process a mapping came from, and so how to
// open its file, belongs to the profile, not to the symbolizer: an agent
// that symbolizes one interval while it collects the next passes each
// profile's own opener, and the symbolizer's caches serve them all.
func (s *Symbolizer) SymbolizeWith(p *profile.Profile, open Opener) error {
	return s.SymbolizeFrom(p, open, nil)
}

// SymbolizeFrom is SymbolizeWith with object files given by object (nil:
// opened by open), as the agent's process table holds them.
func (s *Symbolizer) SymbolizeFrom(p *profile.Profile, open Opener, object ObjectOpener) error {
	src := source{open, object}
	byMapping := make(map[*profile.Mapping][]*profile.Location)
	for _, l := range p.Location {
		if len(l.Line) == 0 && l.Mapping != nil {
			byMapping[l.Mapping] = append(byMapping[l.Mapping], l)
		}
	}
	fs := newFuncSet(p)
	var errs []error
	for _, m := range byFile(p.Mapping) {
		locs := byMapping[m]
		if len(locs) == 0 {
			continue
		}
		slices.SortFunc(locs, func(a, b *profile.Location) int { return cmpU64(a.Address, b.Address) })
		var err error
		switch {
		case m.File == pprof.KernelFile || strings.HasPrefix(m.File, "[kernel."):
			err = s.symbolizeKernel(m, locs, fs)
		case isJITNames(m.File):
			err = s.symbolizeJIT(m, locs, fs, src.open)
		case m.File == objfile.VDSOPath:
			err = s.symbolizeVDSO(m, locs, fs)
		case m.File == "" || strings.HasPrefix(m.File, "["):
			continue // [vdso], [anon], ...: nothing on disk to read
		default:
			err = s.symbolizeObject(m, locs, fs, src)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	fs.dropElided()
	return errors.Join(errs...)
}

// byFile returns the mappings in an order that puts those of one file
// (build ID, else path) one after another: a whole-system profile has a
// mapping of libc, say, in every process, and an object evicted from a small
// cache (a one-shot record's) between two of them would be opened and
// indexed again.
func byFile(ms []*profile.Mapping) []*profile.Mapping {
	ms = slices.Clone(ms)
	slices.SortStableFunc(ms, func(a, b *profile.Mapping) int {
		return cmp.Or(strings.Compare(a.BuildID, b.BuildID), strings.Compare(a.File, b.File))
	})
	return ms
}

// isJITNames reports whether file names a process's JIT code: a perf map
// (perf-PID.map) or a jitdump file (jit-PID.dump).
func isJITNames(file string) bool {
	base := file[strings.LastIndexByte(file, '/')+1:]
	return strings.HasPrefix(base, "perf-") && strings.HasSuffix(base, ".map") ||
		strings.HasPrefix(base, "jit-") && strings.HasSuffix(base, ".dump")
}

// parseJITNames reads a perf map or a jitdump file, told apart by their
// first bytes (a jitdump's magic) or, for one whose header is not written
// yet, by name.
func parseJITNames(f *os.File, name string) (*perfMap, error) {
	r := bufio.NewReader(f)
	head, _ := r.Peek(4)
	if isJITDump(head) || strings.HasSuffix(name, ".dump") {
		return parseJITDump(r, name)
	}
	return parsePerfMap(r, name)
}

func (s *Symbolizer) symbolizeObject(m *profile.Mapping, locs []*profile.Location, fs *funcSet, src source) error {
	e, err := s.object(m, src)
	if err == nil && s.stale(e) {
		s.cache.drop(e)
		e, err = s.object(m, src)
	}
	if err != nil {
		return fmt.Errorf("symbolize %s: %w", m.File, err)
	}
	defer s.cache.release(e)
	o := e.obj
	if m.BuildID != "" && o.buildID != "" && m.BuildID != o.buildID && m.BuildID != o.goBuildID {
		// The file on disk is not the one the process mapped (upgraded
		// since): its frames would be wrong.
		return fmt.Errorf("symbolize %s: build ID %s, mapping has %s: %w", m.File, o.buildID, m.BuildID, ErrBuildIDMismatch)
	}
	if m.BuildID == "" {
		m.BuildID = o.buildID
		if m.BuildID == "" {
			m.BuildID = o.goBuildID
		}
	}
	return fs.fillFrom(o, m, locs, o.Err())
}

// fillFrom names every location of m from object o, the frames as users read
// them; the error is firstErr, else the first lookup's.
func (fs *funcSet) fillFrom(o *Object, m *profile.Mapping, locs []*profile.Location, firstErr error) error {
	for _, l := range locs {
		va, err := o.Vaddr(m, l.Address)
		if err != nil {
			firstErr = keepFirst(firstErr, err)
			continue
		}
		frames, err := o.ShownFrames(va)
		firstErr = keepFirst(firstErr, err)
		fs.fillNamed(m, l, frames, o.Demangle)
	}
	return firstErr
}

// keepFirst returns the first non-nil of first and err.
func keepFirst(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// source is where one profile's files come from.
type source struct {
	open   Opener
	object ObjectOpener
}

// file returns the object file of m from s.files: as object gives it, else
// opened by open (or from the debug source) and added.
func (s *Symbolizer) file(m *profile.Mapping, src source) (*objfile.File, error) {
	if src.object != nil {
		if f, err := src.object(m); err == nil {
			return f, nil
		}
	}
	f, err := src.open.open(m)
	if err != nil {
		if f, err = s.openFetched(m, err); err != nil {
			return nil, err
		}
	}
	return s.files.Add(f, m.File)
}

// object returns the cache entry of m's file, indexing it on a miss.
func (s *Symbolizer) object(m *profile.Mapping, src source) (*cacheEntry, error) {
	if m.BuildID != "" {
		if e, ok := s.cache.get(objfile.BuildIDKey(m.BuildID)); ok {
			return e, nil
		}
	}
	file, err := s.file(m, src)
	if err != nil {
		return nil, err
	}
	defer file.Release()
	fk := objfile.FileKey(file.Stat())
	if e, ok := s.cache.get(fk); ok {
		return e, nil
	}
	gnu, _ := file.BuildIDs()
	if gnu != "" {
		// Another file of a binary already indexed (its build ID read
		// when the file was opened): the same tables.
		if e, ok := s.cache.get(objfile.BuildIDKey(gnu)); ok {
			s.cache.alias(e, fk)
			return e, nil
		}
	}
	o, err := s.openObject(file, m.File)
	if err != nil {
		return nil, err
	}
	s.parsed.Add(1)
	if o.buildID == "" {
		return s.cache.add(fk, o), nil
	}
	e := s.cache.add(objfile.BuildIDKey(o.buildID), o)
	s.cache.alias(e, fk)
	return e, nil
}

func (open Opener) open(m *profile.Mapping) (*os.File, error) {
	if open != nil {
		return open(m)
	}
	return os.Open(m.File)
}

// symbolizeKernel answers the profile's kernel addresses from the spans of
// kernel text remembered from earlier passes, then from this boot's table of
// core kernel text on disk (resolveKernel), and reads kallsyms for the rest
// only (see resolveKallsyms): each pass sees the modules loaded now.
func (s *Symbolizer) symbolizeKernel(m *profile.Mapping, locs []*profile.Location, fs *funcSet) error {
	answers := make(map[uint64]Frame, len(locs))
	var misses []uint64
	for _, l := range locs {
		if f, ok := s.kernel.lookup(l.Address); ok {
			answers[l.Address] = f
		} else {
			misses = append(misses, l.Address)
		}
	}
	if len(misses) > 0 {
		slices.Sort(misses)
		misses = slices.Compact(misses)
		if err := s.resolveKernel(misses, answers); err != nil {
			return fmt.Errorf("symbolize kernel: %w", err)
		}
	}
	for _, l := range locs {
		if f, ok := answers[l.Address]; ok {
			fs.fill(m, l, []Frame{f})
		}
	}
	return nil
}

// symbolizeJIT names JIT code from the perf map or jitdump file of its
// process, read again when it has grown since.
func (s *Symbolizer) symbolizeJIT(m *profile.Mapping, locs []*profile.Location, fs *funcSet, open Opener) error {
	f, err := open.open(m) // in a container, the opener finds its /tmp
	if err != nil {
		return fmt.Errorf("symbolize %s: %w", m.File, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("symbolize %s: %w", m.File, err)
	}
	s.mu.Lock()
	e, ok := s.perfMaps[m.File]
	s.mu.Unlock()
	if !ok || e.size != st.Size() || !e.mtime.Equal(st.ModTime()) {
		pm, err := parseJITNames(f, m.File)
		if err != nil {
			return fmt.Errorf("symbolize: %w", err)
		}
		e = perfMapEntry{st.Size(), st.ModTime(), pm}
		s.mu.Lock()
		if len(s.perfMaps) > 256 {
			clear(s.perfMaps)
		}
		s.perfMaps[m.File] = e
		s.mu.Unlock()
	}
	for _, l := range locs {
		if f, ok := e.m.lookup(l.Address); ok {
			fs.fill(m, l, []Frame{f})
		}
	}
	return nil
}

// funcSet creates or reuses the profile's Functions, by name and file.
type funcSet struct {
	p      *profile.Profile
	byKey  map[[2]string]*profile.Function
	nextID uint64
	elided []*profile.Location // every frame elided: dropped from the profile
}

func newFuncSet(p *profile.Profile) *funcSet {
	fs := &funcSet{p: p, byKey: make(map[[2]string]*profile.Function)}
	for _, f := range p.Function {
		fs.byKey[[2]string{f.Name, f.Filename}] = f
		fs.nextID = max(fs.nextID, f.ID)
	}
	return fs
}

func (fs *funcSet) function(name, system, file string) *profile.Function {
	k := [2]string{name, file}
	if f, ok := fs.byKey[k]; ok {
		return f
	}
	fs.nextID++
	f := &profile.Function{ID: fs.nextID, Name: name, SystemName: system, Filename: file}
	fs.p.Function = append(fs.p.Function, f)
	fs.byKey[k] = f
	return f
}

// fill sets l's Lines from frames (innermost first, the pprof order) and
// the mapping's Has* flags.
func (fs *funcSet) fill(m *profile.Mapping, l *profile.Location, frames []Frame) {
	fs.fillNamed(m, l, frames, nil)
}

// fillNamed is fill for frames with raw (mangled) names: Function.Name gets
// the demangled name and SystemName the raw one.
func (fs *funcSet) fillNamed(m *profile.Mapping, l *profile.Location, frames []Frame, demangle func(string) string) {
	if len(frames) == 0 {
		return
	}
	l.Line = make([]profile.Line, 0, len(frames))
	for _, f := range frames {
		if f.Function == "" && f.File == "" || f.Elided {
			continue
		}
		name, system := f.Function, f.Function
		if demangle != nil {
			name = demangle(system)
		}
		if name == "" {
			name, system = "??", "??"
		}
		l.Line = append(l.Line, profile.Line{Function: fs.function(name, system, f.File), Line: int64(f.Line), Column: int64(f.Column)})
		m.HasFunctions = m.HasFunctions || f.Function != ""
		m.HasFilenames = m.HasFilenames || f.File != ""
		m.HasLineNumbers = m.HasLineNumbers || f.Line != 0
	}
	if len(l.Line) > 1 {
		m.HasInlineFrames = true
	}
	if len(l.Line) == 0 {
		fs.elided = append(fs.elided, l) // every frame elided (Go's conventions)
	}
}

// dropElided takes the Locations whose every frame was elided out of the
// samples and the profile, as Go's profiles have no such frame.
func (fs *funcSet) dropElided() {
	if len(fs.elided) == 0 {
		return
	}
	gone := make(map[*profile.Location]bool, len(fs.elided))
	for _, l := range fs.elided {
		gone[l] = true
	}
	for _, s := range fs.p.Sample {
		s.Location = slices.DeleteFunc(s.Location, func(l *profile.Location) bool { return gone[l] })
	}
	fs.p.Location = slices.DeleteFunc(fs.p.Location, func(l *profile.Location) bool { return gone[l] })
}
