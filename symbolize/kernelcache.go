package symbolize

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"

	"github.com/emberprof/ember/export/atomicfile"
	"github.com/emberprof/ember/export/cachedir"
	"github.com/emberprof/ember/export/pprof"
)

// The core kernel's text symbols on disk, one file per boot (#19). Every
// recording ends by naming its kernel addresses, and a pass over
// /proc/kallsyms costs ~55 ms of CPU, two thirds of it the kernel formatting
// the 5 MB file; kernelSpans spares passes within one process only. The core
// kernel's text does not move while the system runs, so its symbols, read in
// one pass, answer its addresses for every later run of the same boot: the
// table is kept in a directory of the caller's (SetKernelCacheDir; Ember's
// cache directory), in a file named by the boot ID, and mapped read-only and
// binary-searched by the next run, which reads no more of /proc/kallsyms than
// its first lines. Module text, [bpf] programs and ftrace trampolines (the
// lines with a "[module]" field) come and go while the system runs: their
// addresses still need a pass, as do all addresses when the file is hidden.
//
// A file is used only when it is this user's own and no one else may write it
// (mapCacheFile), holds this boot's ID, its sizes add up, and its first
// symbol is the first text symbol /proc/kallsyms shows now: a reader who sees
// zero addresses (kptr_restrict, perf_event_paranoid) gets the pass's error,
// never addresses from the file. Anything else is ignored and written anew
// by the next pass. The directory is trimmed, oldest first, to
// maxKernelDirBytes (old boots' files).
//
// The table answers only addresses in [its first symbol, its last): above
// the last core text symbol (_einittext on x86-64) the span's end is unknown.
// Inside that range no other text lies: modules, BPF programs and
// trampolines are placed in the module area, outside the kernel image's
// addresses (a pass that finds one inside writes no table), so the nearest
// core symbol at or below an address there is the pass's answer.

// maxKernelDirBytes bounds the kernel directory: a table is 4-5 MB.
const maxKernelDirBytes = 32 << 20

// maxKernelTableBytes bounds a table file mapped or written.
const maxKernelTableBytes = 128 << 20

// kallsymsHeadBytes bounds what is read of /proc/kallsyms to find its first
// text symbol (percpu and absolute symbols may come first).
const kallsymsHeadBytes = 64 << 10

const kernelMagic = "EMBKSYM1"

// The header: magic, the boot ID, the number of symbols, the end of the
// range answered, the first text line's address and the lengths of its name
// and of the name blob. Then that name, the addresses (8 bytes each, sorted
// and distinct), the name offsets (4 bytes each, one more than the symbols:
// name i is blob[off[i]:off[i+1]]) and the blob. Little-endian.
const (
	bootIDLen        = 36
	kernelHeaderSize = 8 + bootIDLen + 4 + 8 + 8 + 4 + 4
)

var kernelCache cacheDir

// SetKernelCacheDir keeps a table of the core kernel's text symbols in dir,
// one per boot ("" keeps none, the default). The directory is made (0700)
// when first written.
func SetKernelCacheDir(dir string) { kernelCache.set(dir) }

// bootIDPath names this boot, and procKallsyms is the running kernel's
// symbols, which the boot ID names; variables for the tests.
var (
	bootIDPath   = "/proc/sys/kernel/random/boot_id"
	procKallsyms = "/proc/kallsyms"
)

// bootID returns the boot ID, if it reads as one (36 characters of hex
// digits and dashes: a file name).
func bootID() (string, bool) {
	b, err := os.ReadFile(bootIDPath)
	b = bytes.TrimSpace(b)
	if err != nil || len(b) != bootIDLen {
		return "", false
	}
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || c == '-') {
			return "", false
		}
	}
	return string(b), true
}

// textSym is a text line of kallsyms: its address and name.
type textSym struct {
	addr uint64
	name string
}

// kallsymsHead reads r (kallsyms) up to its first text line and returns that
// line's symbol and what it read, for a pass to read again; ok is false when
// there is none in the first kallsymsHeadBytes or its address is zero.
func kallsymsHead(r io.Reader) (first textSym, head []byte, ok bool) {
	buf := make([]byte, 0, 4096)
	for len(buf) < kallsymsHeadBytes {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, len(buf))
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), kallsymsHeadBytes)])
		buf = buf[:len(buf)+n]
		rest := buf
		for {
			nl := bytes.IndexByte(rest, '\n')
			if nl < 0 {
				break
			}
			line := rest[:nl]
			rest = rest[nl+1:]
			addrF, line := nextField(line)
			typ, line := nextField(line)
			sym, _ := nextField(line)
			if len(sym) == 0 || len(typ) != 1 || !isText(typ[0]) {
				continue
			}
			addr, valid := parseHex(addrF)
			return textSym{addr, string(sym[:min(len(sym), maxNameLen)])}, buf, valid && addr != 0
		}
		if err != nil {
			break
		}
	}
	return textSym{}, buf, false
}

func isText(t byte) bool { return t == 't' || t == 'T' || t == 'w' || t == 'W' }

// kernelTable is a table file, mapped.
type kernelTable struct {
	data        []byte
	boot        string  // the boot it was read in
	first       textSym // kallsyms's first text line then
	n           int
	end         uint64 // addresses at or above it are not answered
	addrs, offs []byte
	blob        []byte
}

// parseKernelTable checks that data's sizes add up, and returns its table.
func parseKernelTable(data []byte) (*kernelTable, error) {
	if len(data) < kernelHeaderSize || string(data[:8]) != kernelMagic {
		return nil, fmt.Errorf("kernel symbol table: no header: %w", ErrFormat)
	}
	le := binary.LittleEndian
	h := data[8+bootIDLen : kernelHeaderSize]
	n, end, firstAddr := uint64(le.Uint32(h)), le.Uint64(h[4:]), le.Uint64(h[12:])
	nameLen, blobLen := uint64(le.Uint32(h[20:])), uint64(le.Uint32(h[24:]))
	if n < 2 || n > maxKallsymsLines {
		return nil, fmt.Errorf("kernel symbol table: %d symbols: %w", n, ErrFormat)
	}
	if want := kernelHeaderSize + nameLen + 8*n + 4*(n+1) + blobLen; uint64(len(data)) != want {
		return nil, fmt.Errorf("kernel symbol table: %d bytes, its header says %d: %w", len(data), want, ErrFormat)
	}
	rest := data[kernelHeaderSize:]
	t := &kernelTable{data: data, boot: string(data[8 : 8+bootIDLen]), first: textSym{firstAddr, string(rest[:nameLen])}, n: int(n), end: end}
	rest = rest[nameLen:]
	t.addrs, rest = rest[:8*n], rest[8*n:]
	t.offs, t.blob = rest[:4*(n+1)], rest[4*(n+1):]
	return t, nil
}

func (t *kernelTable) addr(i int) uint64 { return binary.LittleEndian.Uint64(t.addrs[8*i:]) }

// lookup returns the answer for a and the span of core text that has it, if
// a is in the table's range.
func (t *kernelTable) lookup(a uint64) (Frame, span, bool) {
	if a < t.addr(0) || a >= t.end {
		return Frame{}, span{}, false
	}
	// The last symbol at or below a: the one before the first above it.
	lo, hi := 1, t.n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.addr(m) <= a {
			lo = m + 1
		} else {
			hi = m
		}
	}
	i := lo - 1
	off, next := binary.LittleEndian.Uint32(t.offs[4*i:]), binary.LittleEndian.Uint32(t.offs[4*i+4:])
	if off > next || uint64(next) > uint64(len(t.blob)) {
		return Frame{}, span{}, false
	}
	s := span{t.addr(i), t.end}
	if i+1 < t.n {
		s.end = min(s.end, t.addr(i+1))
	}
	return Frame{Function: string(t.blob[off:next]), File: pprof.KernelFile}, s, true
}

// answer looks addrs up in t, puts what it answers in answers and k, and
// returns the rest. Mapped data that faults (a file truncated underneath)
// answers nothing.
func (t *kernelTable) answer(addrs []uint64, answers map[uint64]Frame, k *kernelSpans) (rest []uint64, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard("kernel symbol table", &err)
	for _, a := range addrs {
		if f, s, ok := t.lookup(a); ok {
			answers[a] = f
			k.add(s, f)
		} else {
			rest = append(rest, a)
		}
	}
	return rest, nil
}

// openKernelTable maps dir's table for boot, if it is one whose first
// symbol is first. A fault on the mapped header (a file cut short
// underneath) is an error, as in answer.
func openKernelTable(dir, boot string, first textSym) (t *kernelTable, err error) {
	path := filepath.Join(dir, boot)
	data, err := mapCacheFile(path, func(n int64) error {
		if n < kernelHeaderSize || n > maxKernelTableBytes {
			return fmt.Errorf("kernel symbol table: %d bytes: %w", n, ErrFormat)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unmap(data)
			t = nil
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer guard(path, &err)
	if t, err = parseKernelTable(data); err != nil {
		return nil, err
	}
	if t.boot != boot {
		return nil, fmt.Errorf("kernel symbol table: of boot %q, not this one: %w", t.boot, ErrFormat)
	}
	if t.first != first {
		return nil, fmt.Errorf("kernel symbol table: first symbol %#x %q, kallsyms has %#x %q: %w",
			t.first.addr, t.first.name, first.addr, first.name, ErrFormat)
	}
	return t, nil
}

func (t *kernelTable) close() { unmap(t.data) }

// coreTextBuild collects the core kernel's text symbols during a pass
// (resolveKallsyms): the lines before the first with a module field, which
// the kernel writes in address order. Among symbols at one address the last
// is kept, the pass's answer. Any doubt (a line out of order, a zero
// address, core text after a module's, or a module's inside the core range)
// fails it, and no table is written. A typical kernel's symbols take ~4 MB
// for the pass, in chunks (appending to one slice each would allocate five
// times that as it grows), dropped once written.
type coreTextBuild struct {
	first  textSym
	last   uint64 // the last address added
	addrs  chunked[uint64]
	offs   chunked[uint32] // where each name starts in names
	names  nameChunks
	inMods bool // a module's line was seen: core text is over
	failed bool
}

func newCoreTextBuild() *coreTextBuild { return &coreTextBuild{} }

// add takes a text line's address, name and the rest of the line.
func (b *coreTextBuild) add(addr uint64, sym, rest []byte) {
	if b.failed {
		return
	}
	sym = sym[:min(len(sym), maxNameLen)]
	if mod, _ := nextField(rest); len(mod) > 0 {
		b.inMods = true
		b.failed = addr == 0 || b.addrs.n > 0 && addr >= b.first.addr && addr <= b.last
		return
	}
	switch {
	case addr == 0 || b.inMods || b.addrs.n > 0 && addr < b.last || b.names.size()+len(sym) > maxKernelTableBytes/2:
		b.failed = true
	case b.addrs.n > 0 && addr == b.last:
		// The last at one address wins: it takes the name's place.
		b.offs.cur[len(b.offs.cur)-1] = b.names.replaceLast(b.offs.cur[len(b.offs.cur)-1], sym)
	default:
		if b.addrs.n == 0 {
			b.first = textSym{addr, string(sym)}
		}
		b.last = addr
		b.addrs.add(addr)
		b.offs.add(b.names.add(sym))
	}
}

// chunked is an append-only list kept in chunks of chunkLen.
type chunked[T any] struct {
	full [][]T
	cur  []T
	n    int
}

const chunkLen = 1 << 14

func (c *chunked[T]) add(v T) {
	if len(c.cur) == cap(c.cur) {
		if c.cur != nil {
			c.full = append(c.full, c.cur)
		}
		c.cur = make([]T, 0, chunkLen)
	}
	c.cur = append(c.cur, v)
	c.n++
}

func (c *chunked[T]) each(f func(T)) {
	for _, ch := range append(c.full, c.cur) {
		for _, v := range ch {
			f(v)
		}
	}
}

// nameChunks is the name blob in chunks of nameChunkLen bytes, a name never
// split between two: the blob is the chunks' bytes one after another.
type nameChunks struct {
	full [][]byte
	cur  []byte
	base int // the bytes of full
}

const nameChunkLen = 256 << 10 // > maxNameLen

func (c *nameChunks) size() int { return c.base + len(c.cur) }

// add appends name and returns its offset in the blob.
func (c *nameChunks) add(name []byte) uint32 {
	if len(c.cur)+len(name) > cap(c.cur) {
		if c.cur != nil {
			c.full = append(c.full, c.cur)
			c.base += len(c.cur)
		}
		c.cur = make([]byte, 0, max(nameChunkLen, len(name)))
	}
	off := c.size()
	c.cur = append(c.cur, name...)
	return uint32(off)
}

// replaceLast puts name in place of the last name added, at off, and
// returns its offset.
func (c *nameChunks) replaceLast(off uint32, name []byte) uint32 {
	c.cur = c.cur[:int(off)-c.base] // the last name is in cur, at its end
	return c.add(name)
}

var errNoTable = errors.New("no table of core kernel text")

// write writes the table for boot into dir, whole (atomicfile), in place of
// any other.
func (b *coreTextBuild) write(dir, boot string) error {
	if b.failed || b.addrs.n < 2 {
		return errNoTable
	}
	n, blobLen := b.addrs.n, b.names.size()
	size := int64(kernelHeaderSize + len(b.first.name) + 8*n + 4*(n+1) + blobLen)
	if size > maxKernelTableBytes {
		return errNoTable
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("kernel symbol table: %w", err)
	}
	cachedir.Trim(dir, maxKernelDirBytes-size, nil, "")
	tmp, got, err := atomicfile.WriteTemp(dir, ".tmp-*", 0o600, func(f io.Writer) error {
		w := bufio.NewWriterSize(f, 64<<10)
		le := binary.LittleEndian
		h := append([]byte(kernelMagic), boot...)
		h = le.AppendUint32(h, uint32(n))
		h = le.AppendUint64(h, b.last) // the last symbol's span has no known end
		h = le.AppendUint64(h, b.first.addr)
		h = le.AppendUint32(h, uint32(len(b.first.name)))
		h = le.AppendUint32(h, uint32(blobLen))
		w.Write(h)
		w.WriteString(b.first.name)
		var e [8]byte
		b.addrs.each(func(a uint64) { w.Write(le.AppendUint64(e[:0], a)) })
		b.offs.each(func(o uint32) { w.Write(le.AppendUint32(e[:0], o)) })
		w.Write(le.AppendUint32(e[:0], uint32(blobLen)))
		for _, ch := range append(b.names.full, b.names.cur) {
			w.Write(ch)
		}
		return w.Flush()
	})
	if err != nil {
		return fmt.Errorf("kernel symbol table: %w", err)
	}
	if got != size || os.Rename(tmp, filepath.Join(dir, boot)) != nil {
		os.Remove(tmp)
		return fmt.Errorf("kernel symbol table: %s: not kept: %w", tmp, errNoTable)
	}
	return nil
}

// resolveKernel answers addrs (sorted, distinct) into answers and s.kernel: from
// this boot's table when the cache directory has one, with a pass over
// kallsyms for the rest, which writes the table when there was none.
func (s *Symbolizer) resolveKernel(addrs []uint64, answers map[uint64]Frame) error {
	f, err := os.Open(s.opts.KallsymsPath)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	var build *coreTextBuild
	dir, boot := kernelCache.get(), ""
	// The boot ID names the running kernel's symbols, not those of a file
	// elsewhere (the tests' tables).
	if dir != "" && s.opts.KallsymsPath == procKallsyms {
		var ok bool
		boot, ok = bootID()
		first, head, shown := kallsymsHead(f)
		r = io.MultiReader(bytes.NewReader(head), f)
		if ok && shown {
			t, err := openKernelTable(dir, boot, first)
			if err == nil {
				var rest []uint64
				rest, err = t.answer(addrs, answers, &s.kernel)
				t.close()
				if err == nil && len(rest) == 0 {
					return nil
				} else if err == nil {
					addrs = rest
				}
			}
			if err != nil {
				build = newCoreTextBuild() // none, or not one to use: the pass writes it anew
			}
		}
	}
	s.kallsymsPasses.Add(1)
	frames, ok, spans, err := resolveKallsymsBuild(r, s.opts.KallsymsPath, addrs, build)
	if err != nil {
		return err
	}
	for i, a := range addrs {
		if ok[i] {
			answers[a] = frames[i]
			s.kernel.add(spans[i], frames[i])
		}
	}
	if build != nil {
		_ = build.write(dir, boot) // a run without it only reads kallsyms again
	}
	return nil
}
