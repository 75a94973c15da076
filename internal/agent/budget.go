package agent

import (
	"fmt"
	"math/bits"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// MinMemoryLimit is the smallest --memory-limit the agent runs in: its BPF
// maps at their smallest and a Go heap that can symbolize a busy interval.
const MinMemoryLimit = 48 << 20

// DefaultMemoryLimit is --memory-limit's default.
const DefaultMemoryLimit = 128 << 20

// Budget divides --memory-limit between what the agent holds: the kernel's
// BPF maps (the unwind-rows array is the one that scales; the others are
// sized from the rate and CPUs and are a few MiB), the symbolizer's cache of
// binaries (file-backed mappings and their indexes), each remote sink's
// queue of encoded profiles, and the Go heap, whose soft limit
// (debug.SetMemoryLimit) is what is left once the maps are loaded.
type Budget struct {
	Limit          int64
	UnwindRowBytes int64 // kernel memory of the unwind-rows array
	StackMapBytes  int64 // kernel memory of each stack-trace map (4 of them)
	SymbolCache    int64 // the symbolizer's object cache
	QueueBytes     int64 // each remote sink's upload queue
	ShipBytes      int64 // symbolized intervals waiting for the sinks (the agent's ship queue)
	CollectBytes   int64 // drained samples waiting to be added to their interval (collectQueue)
	UnwindCache    int64 // built unwind tables kept in Go for reuse
	KnownPIDs      uint32
	StackCopyBytes uint32 // the ring of copied user stacks
}

// PlanMemory splits limit. At the default 128 MiB: 16 MiB of unwind rows,
// stack-trace maps of at most 8 MiB each (the 4096 stacks 19 Hz needs on
// 2 CPUs take 4 MiB; 2048 fit at 64 MiB), 16 MiB of symbolizer cache, 8 MiB
// per upload queue, 4 MiB of symbolized intervals waiting for the sinks,
// 4 MiB of drained samples waiting to be added to their interval,
// 8 MiB of unwind tables kept in Go, 32768 known processes and a 2 MiB ring
// of stack copies in the kernel; at 64 MiB, half of each, and a quarter of
// the unwind rows.
func PlanMemory(limit int64) (Budget, error) {
	if limit < MinMemoryLimit {
		return Budget{}, fmt.Errorf("--memory-limit %d MiB: the agent needs at least %d MiB", limit>>20, MinMemoryLimit>>20)
	}
	return Budget{
		Limit: limit,
		// An eighth, and below the default less: a small host maps few
		// binaries (16 MiB at 128 MiB, 4 MiB at 64).
		UnwindRowBytes: limit / 8 * (min(limit, DefaultMemoryLimit) >> 20) / (DefaultMemoryLimit >> 20),
		StackMapBytes:  limit / 16,
		SymbolCache:    limit / 8,
		QueueBytes:     limit / 16,
		ShipBytes:      limit / 32,
		CollectBytes:   limit / 32,
		UnwindCache:    limit / 16,
		// 80 bytes an entry: 32768 at 128 MiB, 16384 at 64.
		KnownPIDs: uint32(limit >> 12),
		// A power of 2: 2 MiB at 128 MiB, 1 MiB at 64.
		StackCopyBytes: uint32(1) << (bits.Len64(uint64(limit/64)) - 1),
	}, nil
}

// goLimit returns the Go runtime's soft memory limit once the maps hold
// mapBytes and fileBytes of files are resident (the agent's own code as it
// runs now: start-up's pages are given back, trimOwnText; binaries and
// spilled sections the symbolizer maps): the limit less
// those and half the symbolizer's cache (the binaries it maps; the indexes
// it builds are Go heap), and never less than a quarter of the limit (the
// collector then runs often rather than the heap growing unnoticed).
func (b Budget) goLimit(mapBytes, fileBytes int64) int64 {
	return max(b.Limit-mapBytes-fileBytes-b.SymbolCache/2, b.Limit/4)
}

// applyGoLimit sets the Go runtime's memory limit from the budget, unless
// GOMEMLIMIT in the environment set one (it wins, as for any Go program).
func (b Budget) applyGoLimit(mapBytes int64, gomemlimit string) int64 {
	if gomemlimit != "" || b.Limit == 0 {
		return debug.SetMemoryLimit(-1)
	}
	l := b.goLimit(mapBytes, residentFileBytes())
	debug.SetMemoryLimit(l)
	return l
}

// residentFileBytes returns this process's file-backed resident memory
// (RssFile in /proc/self/status), 0 if unknown.
func residentFileBytes() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
