package unwind

import "golang.org/x/sys/unix"

// regsOf turns a stopped thread's ptrace registers into the walker's.
func regsOf(r *unix.PtraceRegs) Regs {
	return Regs{PC: r.Rip, SP: r.Rsp, FP: r.Rbp}
}
