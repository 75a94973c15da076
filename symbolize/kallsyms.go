package symbolize

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// KernelFile is the Mapping.File of kernel frames, and the Frame.File given to
// symbols of the core kernel. Symbols of a module get "[module]".
const KernelFile = "[kernel.kallsyms]"

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
// addresses per profile. Reading the file again per profile costs ~60 ms,
// two thirds of it the kernel formatting the file (the agent pays it once
// an interval; every interval brings new kernel addresses, so a cache of
// answers would not spare it).
//
// The file is sorted by address only in parts (modules follow the core
// kernel), so it keeps, for each gap between consecutive addresses
// (addrs[i-1], addrs[i]], the highest symbol seen in it; the answer for
// addrs[i] is that of the nearest gap at or below i that has one. Among
// symbols at one address the last in the file wins, as a stable sort would
// give. All-zero addresses (kptr_restrict) give an error saying so.
func resolveKallsyms(r io.Reader, name string, addrs []uint64) (frames []Frame, ok []bool, err error) {
	defer guard(name, &err)
	type best struct {
		addr   uint64
		set    bool
		name   []byte
		module int // index in modules
	}
	gaps := make([]best, len(addrs))
	modules := []string{KernelFile}
	moduleIndex := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLineLen)
	text, zero := 0, 0
	for n := 0; sc.Scan(); n++ {
		if n >= maxKallsymsLines {
			return nil, nil, fmt.Errorf("%s: more than %d lines: %w", name, maxKallsymsLines, ErrTooLarge)
		}
		line := sc.Bytes()
		addrF, line := nextField(line)
		typ, line := nextField(line)
		sym, line := nextField(line)
		if len(sym) == 0 {
			continue
		}
		if len(typ) != 1 || !strings.ContainsRune("tTwW", rune(typ[0])) {
			continue
		}
		addr, err := strconv.ParseUint(string(addrF), 16, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: line %d: %w: %w", name, n+1, ErrFormat, err)
		}
		if addr == 0 {
			zero++
			continue
		}
		text++
		i, _ := slices.BinarySearch(addrs, addr) // the gap addr falls in
		if i == len(addrs) || gaps[i].set && gaps[i].addr > addr {
			continue
		}
		g := &gaps[i]
		g.addr, g.set = addr, true
		g.name = append(g.name[:0], sym[:min(len(sym), maxNameLen)]...)
		g.module = 0
		if mod, _ := nextField(line); len(mod) > 2 && mod[0] == '[' && mod[len(mod)-1] == ']' {
			m, known := moduleIndex[string(mod)]
			if !known {
				m = len(modules)
				modules = append(modules, string(mod))
				moduleIndex[string(mod)] = m
			}
			g.module = m
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w: %w", name, ErrFormat, err)
	}
	if text == 0 && zero > 0 {
		return nil, nil, fmt.Errorf("%s: all addresses are zero (kernel.kptr_restrict, or not root)", name)
	}
	frames, ok = make([]Frame, len(addrs)), make([]bool, len(addrs))
	var cur *best
	for i := range gaps {
		if gaps[i].set {
			cur = &gaps[i]
			frames[i] = Frame{Function: string(cur.name), File: modules[cur.module]}
		} else if cur != nil {
			frames[i] = frames[i-1]
		}
		ok[i] = cur != nil
	}
	return frames, ok, nil
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
