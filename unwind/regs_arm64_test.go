package unwind

import "golang.org/x/sys/unix"

// regsOf turns a stopped thread's ptrace registers into the walker's: x29
// is the frame pointer, x30 the link register.
func regsOf(r *unix.PtraceRegs) Regs {
	return Regs{PC: r.Pc, SP: r.Sp, FP: r.Regs[29], LR: r.Regs[30]}
}
