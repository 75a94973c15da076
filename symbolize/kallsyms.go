package symbolize

import (
	"bufio"
	"fmt"
	"io"
	"math"
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

// kallsyms is the kernel's symbol table, sorted by address. It holds over
// 100,000 text symbols on a typical kernel and lives as long as the
// symbolizer (the agent keeps it between intervals), so names share one
// arena and each symbol is 16 bytes: a string and a module string per symbol
// took 40 bytes plus a header and allocation per name.
type kallsyms struct {
	syms    []ksym
	names   []byte   // every name, back to back
	modules []string // modules[0] is the core kernel ("")
}

type ksym struct {
	addr   uint64
	name   uint32 // offset in names
	len    uint16 // name length (names are cut at 65535 bytes)
	module uint16 // index in modules
}

// parseKallsyms reads /proc/kallsyms lines: "address type name [module]".
// Only text symbols (t, T, w, W) are kept. All-zero addresses (kptr_restrict)
// give an empty table and an error saying so.
func parseKallsyms(r io.Reader, name string) (k *kallsyms, err error) {
	defer guard(name, &err)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLineLen)
	k = &kallsyms{modules: []string{""}}
	// Grown by doubling and kept as they are: append's 1.25x steps for
	// large slices allocate five times the final size on the way, and a
	// copy to size would hold both at the end.
	var names []byte
	modules := map[string]uint16{}
	zero := 0
	for n := 0; sc.Scan(); n++ {
		if n >= maxKallsymsLines {
			return nil, fmt.Errorf("%s: more than %d lines: %w", name, maxKallsymsLines, ErrTooLarge)
		}
		line := sc.Bytes()
		addrF, line := nextField(line)
		typ, line := nextField(line)
		sym, line := nextField(line)
		mod, _ := nextField(line)
		if len(sym) == 0 {
			continue
		}
		if len(typ) != 1 || !strings.ContainsRune("tTwW", rune(typ[0])) {
			continue
		}
		addr, err := strconv.ParseUint(string(addrF), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: %w: %w", name, n+1, ErrFormat, err)
		}
		if addr == 0 {
			zero++
			continue
		}
		sym = sym[:min(len(sym), maxNameLen, math.MaxUint16)]
		if len(names)+len(sym) > math.MaxUint32 {
			return nil, fmt.Errorf("%s: more than 4 GiB of names: %w", name, ErrTooLarge)
		}
		s := ksym{addr: addr, name: uint32(len(names)), len: uint16(len(sym))}
		names = append(grow(names, len(sym)), sym...)
		if len(mod) > 2 && mod[0] == '[' && mod[len(mod)-1] == ']' {
			i, ok := modules[string(mod)]
			if !ok {
				if len(k.modules) > math.MaxUint16 {
					return nil, fmt.Errorf("%s: more than %d modules: %w", name, math.MaxUint16, ErrTooLarge)
				}
				i = uint16(len(k.modules))
				k.modules = append(k.modules, string(mod))
				modules[string(mod)] = i
			}
			s.module = i
		}
		k.syms = append(grow(k.syms, 1), s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrFormat, err)
	}
	if len(k.syms) == 0 && zero > 0 {
		return nil, fmt.Errorf("%s: all addresses are zero (kernel.kptr_restrict, or not root)", name)
	}
	k.names = names
	slices.SortStableFunc(k.syms, func(a, b ksym) int { return cmpU64(a.addr, b.addr) })
	return k, nil
}

// grow makes room for n more elements, doubling the capacity when it must.
func grow[S ~[]E, E any](s S, n int) S {
	if len(s)+n <= cap(s) {
		return s
	}
	return slices.Grow(s, max(n, len(s), 1024))
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

// lookup returns the frame of a kernel address: the nearest text symbol at or
// below it, as perf does.
func (k *kallsyms) lookup(addr uint64) (Frame, bool) {
	i, _ := slices.BinarySearchFunc(k.syms, addr+1, func(s ksym, a uint64) int { return cmpU64(s.addr, a) })
	if i == 0 {
		return Frame{}, false
	}
	s := k.syms[i-1]
	file := KernelFile
	if s.module != 0 {
		file = k.modules[s.module]
	}
	return Frame{Function: string(k.names[s.name : s.name+uint32(s.len)]), File: file}, true
}
