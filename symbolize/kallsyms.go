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

// kallsyms is the kernel's symbol table, sorted by address.
type kallsyms struct {
	syms []ksym
}

type ksym struct {
	addr   uint64
	name   string
	module string // "" for the core kernel
}

// parseKallsyms reads /proc/kallsyms lines: "address type name [module]".
// Only text symbols (t, T, w, W) are kept. All-zero addresses (kptr_restrict)
// give an empty table and an error saying so.
func parseKallsyms(r io.Reader, name string) (k *kallsyms, err error) {
	defer guard(name, &err)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLineLen)
	k = &kallsyms{}
	modules := make(map[string]string)
	zero := 0
	for n := 0; sc.Scan(); n++ {
		if n >= maxKallsymsLines {
			return nil, fmt.Errorf("%s: more than %d lines: %w", name, maxKallsymsLines, ErrTooLarge)
		}
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		if len(f[1]) != 1 || !strings.ContainsAny(f[1], "tTwW") {
			continue
		}
		addr, err := strconv.ParseUint(f[0], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: %w: %w", name, n+1, ErrFormat, err)
		}
		if addr == 0 {
			zero++
			continue
		}
		s := ksym{addr: addr, name: strings.Clone(truncate(f[2], maxNameLen))}
		if len(f) >= 4 && strings.HasPrefix(f[3], "[") && strings.HasSuffix(f[3], "]") {
			m := f[3]
			if c, ok := modules[m]; ok {
				m = c
			} else {
				m = strings.Clone(m)
				modules[m] = m
			}
			s.module = m
		}
		k.syms = append(k.syms, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrFormat, err)
	}
	if len(k.syms) == 0 && zero > 0 {
		return nil, fmt.Errorf("%s: all addresses are zero (kernel.kptr_restrict, or not root)", name)
	}
	slices.SortStableFunc(k.syms, func(a, b ksym) int { return cmpU64(a.addr, b.addr) })
	return k, nil
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
	if s.module != "" {
		file = s.module
	}
	return Frame{Function: s.name, File: file}, true
}
