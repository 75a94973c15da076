package tracer

import "github.com/emberprof/ember/bpf"

// The kinds of Sample.Kind, so that callers read samples without importing
// bpf (only this package talks to the kernel side).
const (
	KindOnCPU        = bpf.KindOnCPU
	KindOffCPUSleep  = bpf.KindOffCPUSleep // interruptible sleep
	KindOffCPUDisk   = bpf.KindOffCPUDisk  // uninterruptible (disk) sleep
	KindOffCPURunQ   = bpf.KindOffCPURunQ  // preempted, runnable
	KindOffCPUOther  = bpf.KindOffCPUOther // any other state
	unwindRowKernelB = 8                   // kernel bytes per unwind_rows entry (the value size rounded up to 8)
)

// unwindSizes returns the unwind-table map sizes for cfg: the defaults, with
// the rows array cut to cfg.UnwindRowBytes of kernel memory when that is set
// (the agent derives it from --memory-limit; the rows array is the largest
// map, 24 MiB at the default size).
func unwindSizes(cfg Config) bpf.UnwindSizes {
	s := bpf.DefaultUnwindSizes
	if cfg.UnwindRowBytes > 0 {
		s.Rows = uint32(min(cfg.UnwindRowBytes/unwindRowKernelB, int64(s.Rows)))
	}
	return s
}

// stackEntryBytes is the kernel memory of one stack-trace map entry: 127
// frames of 8 bytes and the bucket's header.
const stackEntryBytes = 1040

// capEntries returns n cut to at most limit, as a power of 2 of at least 1024.
func capEntries(n uint32, limit int64) uint32 {
	c := uint32(1024)
	for int64(c)*2 <= limit && c < n {
		c <<= 1
	}
	return min(n, c)
}
