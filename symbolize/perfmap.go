package symbolize

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
)

const maxPerfMapLines = 1 << 22

// perfMap is the names of a process's JIT code, from a perf map
// (/tmp/perf-PID.map: lines of "START SIZE name", hexadecimal absolute
// addresses) or a jitdump file (jitdump.go). A later entry for an address
// range wins over an earlier one, since JITs reuse memory.
type perfMap struct {
	syms []perfSym // sorted by start
}

type perfSym struct {
	start, size uint64
	name        string
}

func parsePerfMap(r io.Reader, name string) (m *perfMap, err error) {
	defer guard(name, &err)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLineLen)
	m = &perfMap{}
	for n := 0; sc.Scan(); n++ {
		if n >= maxPerfMapLines {
			return nil, fmt.Errorf("%s: more than %d lines: %w", name, maxPerfMapLines, ErrTooLarge)
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		a, rest, ok1 := strings.Cut(line, " ")
		sz, sym, ok2 := strings.Cut(strings.TrimLeft(rest, " "), " ")
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%s: line %d: want START SIZE NAME: %w", name, n+1, ErrFormat)
		}
		start, err1 := ParseAddress(a)
		size, err2 := ParseAddress(sz)
		if err1 != nil || err2 != nil || start+size < start {
			return nil, fmt.Errorf("%s: line %d: bad address or size: %w", name, n+1, ErrFormat)
		}
		m.syms = append(m.syms, perfSym{start, size, strings.Clone(truncate(strings.TrimSpace(sym), maxNameLen))})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrFormat, err)
	}
	return newPerfMap(m.syms), nil
}

// newPerfMap sorts syms, in the order the runtime wrote them, keeping the
// last entry for each start address.
func newPerfMap(syms []perfSym) *perfMap {
	slices.Reverse(syms)
	slices.SortStableFunc(syms, func(a, b perfSym) int { return cmpU64(a.start, b.start) })
	return &perfMap{syms: slices.CompactFunc(syms, func(a, b perfSym) bool { return a.start == b.start })}
}

func (m *perfMap) lookup(addr uint64) (Frame, bool) {
	i, _ := slices.BinarySearchFunc(m.syms, addr+1, func(s perfSym, a uint64) int { return cmpU64(s.start, a) })
	// Entries may overlap; look back a little for the one holding addr.
	for j := i - 1; j >= 0 && j >= i-8; j-- {
		if s := m.syms[j]; addr-s.start < max(s.size, 1) {
			return Frame{Function: s.name}, true
		}
	}
	return Frame{}, false
}
