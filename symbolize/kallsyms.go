package symbolize

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/emberprof/ember/export/pprof"
)

const (
	maxKallsymsLines = 1 << 23
	maxLineLen       = 1 << 16
)

// resolveKallsyms reads /proc/kallsyms lines ("address type name [module]")
// once and returns the frame of each of addrs: the nearest text symbol (t, T,
// w, W) at or below it, as perf does; ok[i] is false where no symbol is. addrs
// must be sorted and distinct.
//
// It keeps what the addresses need, not the table: the table of a typical
// kernel (over 100,000 text symbols) took 8 MiB live for the symbolizer's
// life, a sixth of Ember's resident memory, to answer a few hundred
// addresses per profile. A pass costs ~60 ms, two thirds of it the kernel
// formatting the file; kernelSpans and the table of core kernel text on disk
// (kernelcache.go) spare the passes they can.
//
// The file is sorted by address only in parts (modules follow the core
// kernel), so it keeps, for each gap between consecutive addresses
// (addrs[i-1], addrs[i]], the highest symbol seen in it; the answer for
// addrs[i] is that of the nearest gap at or below i that has one. Among
// symbols at one address the last in the file wins, as a stable sort would
// give. All-zero addresses (kptr_restrict) give an error saying so.
//
// spans[i] is the span of core kernel text that has the answer of addrs[i]:
// from its symbol to the lowest symbol above addrs[i] (the lowest of the next
// gap that has any), when both are symbols of the core kernel, whose text
// does not move while the system runs; else it is zero. Every address in it
// has the same answer, by the same rule.
func resolveKallsyms(r io.Reader, name string, addrs []uint64) (frames []Frame, ok []bool, spans []span, err error) {
	return resolveKallsymsBuild(r, name, addrs, nil)
}

// resolveKallsymsBuild is resolveKallsyms, with the core kernel's text
// symbols collected into build (if not nil) in the same pass, for the
// kernel's table on disk (kernelcache.go).
func resolveKallsymsBuild(r io.Reader, name string, addrs []uint64, build *coreTextBuild) (frames []Frame, ok []bool, spans []span, err error) {
	defer guard(name, &err)
	type best struct {
		addr   uint64
		set    bool
		name   []byte
		module int // index in modules
		low    uint64
		lowMod int // module of low, when low != 0
	}
	// One more gap than addresses: the symbols above the last one, for its
	// span's end.
	gaps := make([]best, len(addrs)+1)
	modules := []string{pprof.KernelFile}
	moduleIndex := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLineLen)
	text, zero := 0, 0
	for n := 0; sc.Scan(); n++ {
		if n >= maxKallsymsLines {
			return nil, nil, nil, fmt.Errorf("%s: more than %d lines: %w", name, maxKallsymsLines, ErrTooLarge)
		}
		line := sc.Bytes()
		addrF, line := nextField(line)
		typ, line := nextField(line)
		sym, line := nextField(line)
		if len(sym) == 0 {
			continue
		}
		if len(typ) != 1 || !isText(typ[0]) {
			continue
		}
		addr, ok := parseHex(addrF)
		if !ok {
			return nil, nil, nil, fmt.Errorf("%s: line %d: %w: address %q is not 1 to 16 hexadecimal digits", name, n+1, ErrFormat, truncate(string(addrF), 32))
		}
		if build != nil {
			build.add(addr, sym, line)
		}
		if addr == 0 {
			zero++
			continue
		}
		text++
		i, _ := slices.BinarySearch(addrs, addr) // the gap addr falls in
		g := &gaps[i]
		lowest := g.low == 0 || addr < g.low
		highest := i < len(addrs) && (!g.set || addr >= g.addr)
		if !lowest && !highest {
			continue
		}
		module := 0
		if mod, _ := nextField(line); len(mod) > 2 && mod[0] == '[' && mod[len(mod)-1] == ']' {
			m, known := moduleIndex[string(mod)]
			if !known {
				m = len(modules)
				modules = append(modules, string(mod))
				moduleIndex[string(mod)] = m
			}
			module = m
		}
		if lowest {
			g.low, g.lowMod = addr, module
		}
		if highest {
			g.addr, g.set, g.module = addr, true, module
			g.name = append(g.name[:0], sym[:min(len(sym), maxNameLen)]...)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w: %w", name, ErrFormat, err)
	}
	if text == 0 && zero > 0 {
		return nil, nil, nil, fmt.Errorf("%s: all addresses are zero: kernel.kptr_restrict, or kernel.perf_event_paranoid above 1, hides them from a process without CAP_SYSLOG", name)
	}
	frames, ok, spans = make([]Frame, len(addrs)), make([]bool, len(addrs)), make([]span, len(addrs))
	var cur *best
	for i := range addrs {
		if gaps[i].set {
			cur = &gaps[i]
			frames[i] = Frame{Function: string(cur.name), File: modules[cur.module]}
		} else if cur != nil {
			frames[i] = frames[i-1]
		}
		ok[i] = cur != nil
		if cur != nil && cur.module == 0 {
			spans[i].start = cur.addr
		}
	}
	// Backwards, the lowest symbol above each address ends its span.
	var next *best
	for i := len(addrs) - 1; i >= 0; i-- {
		if gaps[i+1].low != 0 {
			next = &gaps[i+1]
		}
		if spans[i].start != 0 && next != nil && next.lowMod == 0 {
			spans[i].end = next.low
		} else {
			spans[i] = span{}
		}
	}
	return frames, ok, spans, nil
}

// parseHex parses 1 to 16 hexadecimal digits. A pass reads one address per
// line of /proc/kallsyms (over 100,000): strconv.ParseUint's generality was
// a third of the pass's user time.
func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(c)
	}
	return v, true
}

// nextField returns the first space- or tab-separated field of b and the
// rest after it.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	j := i
	for j < len(b) && b[j] != ' ' && b[j] != '\t' {
		j++
	}
	return b[i:j], b[j:]
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// span is [start, end) of kernel text.
type span struct{ start, end uint64 }

// maxKernelSpans bounds kernelSpans: a few thousand functions are what a
// busy machine's profiles touch; past the bound it starts again.
const maxKernelSpans = 1 << 14

// kernelSpans remembers the answers of kallsyms passes for spans of core
// kernel text (see resolveKallsyms), so that a profile whose kernel
// addresses all fall in functions seen before needs no pass. The agent's
// profiles repeat the same kernel functions at new offsets; reading
// /proc/kallsyms for them cost it ~60 ms an interval.
type kernelSpans struct {
	mu    sync.Mutex
	spans []span  // sorted, disjoint
	names []Frame // names[i] is the answer for spans[i]
}

// lookup returns the answer for addr, if a remembered span has it.
func (k *kernelSpans) lookup(addr uint64) (Frame, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	i, _ := slices.BinarySearchFunc(k.spans, addr, func(s span, a uint64) int { return cmpU64(s.end, a+1) })
	// spans[i] is the first that ends above addr.
	if i < len(k.spans) && k.spans[i].start <= addr {
		return k.names[i], true
	}
	return Frame{}, false
}

// add remembers the answer f for s.
func (k *kernelSpans) add(s span, f Frame) {
	if s.end <= s.start {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	i, found := slices.BinarySearchFunc(k.spans, s.start, func(t span, a uint64) int { return cmpU64(t.start, a) })
	if found {
		return
	}
	if len(k.spans) >= maxKernelSpans {
		k.spans, k.names = k.spans[:0], k.names[:0]
		i = 0
	}
	k.spans = slices.Insert(k.spans, i, s)
	k.names = slices.Insert(k.names, i, f)
}
