package symbolize

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/google/pprof/profile"
)

// Frame is one source-level frame of an address. Function is demangled.
// A frame the symbolizer knows nothing about has Function "" and Line 0.
type Frame struct {
	Function string
	File     string
	Line     int
	Column   int
}

// Sentinel errors. Errors returned by this package wrap one of these where a
// caller may need to tell them apart, and always name the file.
var (
	// ErrFormat reports a file that is not well formed (bad ELF, DWARF,
	// pclntab, kallsyms or perf map content).
	ErrFormat = errors.New("malformed input")
	// ErrTooLarge reports input beyond one of the package's size caps.
	ErrTooLarge = errors.New("input too large")
	// ErrBuildIDMismatch reports a file whose build ID is not the mapping's.
	ErrBuildIDMismatch = errors.New("build ID mismatch")
	// ErrNoMapping reports an address outside every loadable segment.
	ErrNoMapping = errors.New("address outside the object's segments")
)

// Size caps on hostile input.
const (
	maxSectionSize = 1 << 30 // decompressed debug section
	// maxCompressionRatio bounds decompressed/compressed size: real debug
	// sections compress 3 to 20 times; a bomb claims far more.
	maxCompressionRatio = 256
	maxDebugdata        = 64 << 20
	maxInlineDepth      = 64
	maxNameLen          = 1 << 16
	maxFramesPerPC      = 128
	maxMappedObject     = 1 << 36
)

// Object is one ELF file (executable, shared library or debug file) with the
// tables needed to symbolize its addresses. Addresses given to Frames are ELF
// virtual addresses; Vaddr converts a process address. An Object is safe for
// concurrent use.
type Object struct {
	path      string
	buildID   string // GNU build ID, hex
	goBuildID string
	debugPath string // separate debug file, if one was used
	// awaitsDebug: no debug file was found, and one was asked of a
	// DebugSource; the object is reopened once the source has it.
	awaitsDebug bool
	openErr     error // tables that could not be read
	loads       []elf.ProgHeader

	mu        sync.Mutex // guards dw, its lazily built parts, and demangled
	syms      *symtab
	loadDW    func() (*dwarfIndex, error) // set until DWARF is first needed
	dw        *dwarfIndex
	dwErr     error
	gotab     *goTable
	demangled map[string]string

	mapped [][]byte // mmaps, unmapped by Close
	cost   atomic.Int64
	closed bool
}

// OpenObject opens and indexes the ELF file at path, looking for separate
// debug info in the default debug directory (/usr/lib/debug).
func OpenObject(path string) (*Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return NewObject(f, path, nil)
}

// NewObject indexes the ELF file f, which the caller still owns and may close
// when NewObject returns. name is used in errors and to find a .gnu_debuglink
// file beside it; debugDirs defaults to /usr/lib/debug.
func NewObject(f *os.File, name string, debugDirs []string) (*Object, error) {
	data, err := mapFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if debugDirs == nil {
		debugDirs = []string{defaultDebugDir}
	}
	return newObject(data, name, debugDirs, nil)
}

// newObject is NewObject on mapped data, which it unmaps on failure, with
// src asked for the debug file when none is found locally.
func newObject(data []byte, name string, debugDirs []string, src DebugSource) (*Object, error) {
	o, err := parseObject(data, name, debugDirs, true, src)
	if err != nil {
		unmap(data)
		return nil, err
	}
	o.mapped = append(o.mapped, data)
	return o, nil
}

// newObjectBytes indexes an ELF image in memory, with no separate debug file.
// It is what the fuzz targets call.
func newObjectBytes(data []byte, name string) (*Object, error) {
	return parseObject(data, name, nil, false, nil)
}

func mapFile(f *os.File) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file: %w", ErrFormat)
	}
	if st.Size() < 64 {
		return nil, fmt.Errorf("file of %d bytes is too short for ELF: %w", st.Size(), ErrFormat)
	}
	if st.Size() > maxMappedObject {
		return nil, fmt.Errorf("file of %d bytes: %w", st.Size(), ErrTooLarge)
	}
	return syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_PRIVATE)
}

func unmap(b []byte) {
	if b != nil {
		_ = syscall.Munmap(b)
	}
}

// guard turns a panic, or a fault on a mapped file truncated underneath us,
// into an error naming the file. Call it deferred with the function's error.
func guard(name string, errp *error) {
	if r := recover(); r != nil {
		if panicOnBug {
			panic(r)
		}
		*errp = fmt.Errorf("%s: %w: %v", name, ErrFormat, r)
	}
}

// panicOnBug makes guard re-panic, so that fuzzing finds the bugs it would
// otherwise turn into errors. Only the fuzz tests set it.
var panicOnBug = false

func parseObject(data []byte, name string, debugDirs []string, separate bool, src DebugSource) (o *Object, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(name, &err)
	if err := checkELFExtents(data); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ef, err := elf.NewFile(bytesReaderAt(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrFormat, err)
	}
	o = &Object{path: name, demangled: make(map[string]string)}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			o.loads = append(o.loads, p.ProgHeader)
		}
	}
	o.buildID, o.goBuildID = readBuildIDs(ef, data)
	var errs []error
	var rt map[string]uint64
	o.syms, rt, err = newSymtab(ef)
	if err != nil {
		errs = append(errs, err)
	}
	o.gotab, err = newGoTable(ef, data, rt)
	if err != nil {
		errs = append(errs, fmt.Errorf("go pclntab: %w", err))
	}
	// DWARF is indexed when an address first needs it: a Go binary may
	// never need it, and decompressing it is most of the cost of opening.
	if hasDWARF(ef) {
		o.loadDW = func() (*dwarfIndex, error) { return newDWARFIndex(ef, data) }
	}
	// A binary without DWARF or without a symbol table may have them in a
	// separate debug file.
	if separate && (o.loadDW == nil || !o.syms.full) {
		dbg, path := findDebugFile(ef, data, name, o.buildID, debugDirs)
		if dbg == nil && src != nil {
			dbg, path = fetchedDebugFile(src, o.buildID)
			o.awaitsDebug = dbg == nil && o.buildID != ""
		}
		if dbg != nil {
			o.debugPath = path
			o.mapped = append(o.mapped, dbg.mapped...)
			dbg.mapped = nil
			if o.loadDW == nil {
				o.loadDW = dbg.loadDW
			}
			if !o.syms.full && dbg.syms.full {
				o.syms = dbg.syms
			}
		}
	}
	if !o.syms.full {
		if mini, err := miniDebugInfo(ef, name); err != nil {
			errs = append(errs, err)
		} else if mini != nil {
			o.syms = mergeSymtabs(o.syms, mini)
		}
	}
	o.cost.Store(o.baseCost(data))
	if len(errs) > 0 {
		o.openErr = fmt.Errorf("%s: %w", name, errors.Join(errs...))
		if o.gotab == nil && o.loadDW == nil && o.syms.empty() {
			return nil, o.openErr
		}
	}
	return o, nil
}

// Err reports what could not be read when the Object was opened (a bad
// symbol table, say), though other tables could; nil if everything was.
// Errors in DWARF, which is read when first needed, come with Frames.
func (o *Object) Err() error { return o.openErr }

func (o *Object) baseCost(data []byte) int64 {
	c := int64(len(data)) / 16 // mapped, paged in on demand
	c += o.syms.cost()
	if o.gotab != nil {
		c += 256
	}
	return c + 1024
}

// Path is the file name the Object was opened with.
func (o *Object) Path() string { return o.path }

// BuildID is the object's GNU build ID in hex, or "" if it has none.
func (o *Object) BuildID() string { return o.buildID }

// GoBuildID is the Go toolchain's build ID, or "" for non-Go binaries.
func (o *Object) GoBuildID() string { return o.goBuildID }

// DebugFile is the path of the separate debug file used, or "".
func (o *Object) DebugFile() string { return o.debugPath }

// Cost is an estimate, in bytes, of the memory the Object holds.
func (o *Object) Cost() int64 { return o.cost.Load() }

// Close releases the Object's memory maps. Frames must not be called after.
func (o *Object) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	o.closed = true
	for _, m := range o.mapped {
		unmap(m)
	}
	o.mapped = nil
	return nil
}

// Vaddr converts an address in a process, inside mapping m, to the ELF virtual
// address it corresponds to, using the PT_LOAD segment that holds the file
// offset of the address.
func (o *Object) Vaddr(m *profile.Mapping, addr uint64) (uint64, error) {
	if addr < m.Start {
		return 0, fmt.Errorf("%s: %#x below mapping start %#x: %w", o.path, addr, m.Start, ErrNoMapping)
	}
	off := addr - m.Start + m.Offset
	if len(o.loads) == 0 {
		return off, nil
	}
	for _, memsz := range []bool{false, true} {
		for _, p := range o.loads {
			size := p.Filesz
			if memsz {
				size = p.Memsz
			}
			if off >= p.Off && off-p.Off < size {
				return off - p.Off + p.Vaddr, nil
			}
		}
	}
	return 0, fmt.Errorf("%s: file offset %#x: %w", o.path, off, ErrNoMapping)
}

// Frames returns the frames of the ELF virtual address addr, innermost
// (inlined) first, or nil if nothing is known about it. The error, if any,
// names the file and the table that could not be read; frames found by other
// means are still returned with it.
func (o *Object) Frames(addr uint64) (frames []Frame, err error) {
	return o.frames(addr, true)
}

// RawFrames is Frames without demangling: function names as the symbol table
// and DWARF give them (llvm-symbolizer --no-demangle).
func (o *Object) RawFrames(addr uint64) (frames []Frame, err error) {
	return o.frames(addr, false)
}

func (o *Object) frames(addr uint64, demangle bool) (frames []Frame, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil, fmt.Errorf("%s: object closed", o.path)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(o.path, &err)
	if o.gotab != nil {
		frames, err = o.gotab.frames(addr)
		if err != nil {
			err = fmt.Errorf("%s: go pclntab: %w", o.path, err)
		}
		if len(frames) > 0 {
			return frames, err
		}
	}
	if o.loadDW != nil {
		o.dw, o.dwErr = o.loadDW()
		o.loadDW = nil
		if o.dwErr != nil {
			o.dwErr = fmt.Errorf("%s: dwarf: %w", o.path, o.dwErr)
		}
		if o.dw != nil {
			o.cost.Add(o.dw.cost)
		}
	}
	if o.dwErr != nil && err == nil {
		err = o.dwErr
	}
	if o.dw != nil {
		var derr error
		frames, derr = o.dw.frames(addr)
		if derr != nil {
			err = errors.Join(err, fmt.Errorf("%s: dwarf: %w", o.path, derr))
		}
		if c := o.dw.takeCost(); c != 0 {
			o.cost.Add(c)
		}
	}
	// As llvm-symbolizer does, the outermost frame takes its name from the
	// symbol table when it has one: it names clones (.isra.0, .cold) and
	// covers units built with line tables only. The file comes from an
	// STT_FILE symbol only where the debug info has none.
	if name, file, ok := o.syms.lookup(addr); ok {
		if len(frames) == 0 {
			frames = []Frame{{}}
		}
		last := &frames[len(frames)-1]
		last.Function = name
		if last.File == "" {
			last.File = file
		}
	}
	if demangle {
		for i := range frames {
			frames[i].Function = o.demangle(frames[i].Function)
		}
	}
	return frames, err
}

// Demangle returns name demangled (C++, Rust), or unchanged; results are
// memoized per object.
func (o *Object) Demangle(name string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.demangle(name)
}

func (o *Object) demangle(name string) string {
	if !looksMangled(name) {
		return name
	}
	if d, ok := o.demangled[name]; ok {
		return d
	}
	if len(o.demangled) > 1<<16 {
		clear(o.demangled)
	}
	d := demangleName(name)
	o.demangled[name] = d
	return d
}
