package agent

import (
	"fmt"
	"runtime/debug"
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
}

// PlanMemory splits limit. At the default 128 MiB: 16 MiB of unwind rows,
// stack-trace maps of at most 8 MiB each (the 4096 stacks 19 Hz needs on
// 2 CPUs take 4 MiB; 2048 fit at 64 MiB), 32 MiB of symbolizer cache, 8 MiB
// per upload queue; at 64 MiB, half of each.
func PlanMemory(limit int64) (Budget, error) {
	if limit < MinMemoryLimit {
		return Budget{}, fmt.Errorf("--memory-limit %d MiB: the agent needs at least %d MiB", limit>>20, MinMemoryLimit>>20)
	}
	return Budget{
		Limit:          limit,
		UnwindRowBytes: limit / 8,
		StackMapBytes:  limit / 16,
		SymbolCache:    limit / 4,
		QueueBytes:     limit / 16,
	}, nil
}

// goLimit returns the Go runtime's soft memory limit once the maps hold
// mapBytes: the limit less the maps and the symbolizer's file-backed
// mappings, and never less than a quarter of the limit (the collector then
// runs often rather than the heap growing past the budget unnoticed).
func (b Budget) goLimit(mapBytes int64) int64 {
	return max(b.Limit-mapBytes-b.SymbolCache, b.Limit/4)
}

// applyGoLimit sets the Go runtime's memory limit from the budget, unless
// GOMEMLIMIT in the environment set one (it wins, as for any Go program).
func (b Budget) applyGoLimit(mapBytes int64, gomemlimit string) int64 {
	if gomemlimit != "" || b.Limit == 0 {
		return debug.SetMemoryLimit(-1)
	}
	l := b.goLimit(mapBytes)
	debug.SetMemoryLimit(l)
	return l
}
