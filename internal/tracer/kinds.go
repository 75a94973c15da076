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
