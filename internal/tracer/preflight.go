package tracer

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// ErrNotSupported is wrapped by errors about missing privileges or kernel
// features; the message names what is missing.
var ErrNotSupported = ebpf.ErrNotSupported

// missing is an error about a missing privilege or kernel feature: its
// message is one sentence, and it matches ErrNotSupported.
type missing struct{ msg string }

func (e *missing) Error() string { return e.msg }
func (e *missing) Unwrap() error { return ErrNotSupported }

// Capability numbers from include/uapi/linux/capability.h.
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// Preflight checks, before anything is loaded, that this process may load BPF
// programs and open perf events and that the kernel has BTF. The error is one
// sentence naming what is missing.
func Preflight() error {
	caps, err := effectiveCaps()
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	if !has(capSysAdmin) && !(has(capBPF) && has(capPerfmon)) {
		return &missing{"profiling needs root, or the CAP_BPF and CAP_PERFMON capabilities, to load BPF programs and open perf events"}
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return &missing{"this kernel has no BTF (/sys/kernel/btf/vmlinux is missing; it needs CONFIG_DEBUG_INFO_BTF=y)"}
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("cannot raise RLIMIT_MEMLOCK for BPF maps: %w", err)
	}
	raiseNoFile()
	return nil
}

// chooseUnwind resolves UnwindAuto: tables when the kernel has what the
// table walker needs (bpf_loop, 5.17; bpf_task_pt_regs, 5.15), else frame
// pointers, said once. Asking for tables on such a kernel is an error.
func chooseUnwind(m UnwindMode) (UnwindMode, error) {
	if m == UnwindFP {
		return m, nil
	}
	for _, h := range []struct {
		fn   asm.BuiltinFunc
		what string
	}{
		{asm.FnLoop, "the bpf_loop helper (Linux 5.17)"},
		{asm.FnTaskPtRegs, "the bpf_task_pt_regs helper (Linux 5.15)"},
		{asm.FnGetCurrentTaskBtf, "the bpf_get_current_task_btf helper (Linux 5.11)"},
	} {
		if err := features.HaveProgramHelper(ebpf.PerfEvent, h.fn); err != nil {
			if m == UnwindTables {
				return "", &missing{"unwinding with tables needs " + h.what + ", which this kernel lacks; use --unwind fp"}
			}
			slog.Info("walking user stacks with frame pointers only: this kernel lacks " + h.what)
			return UnwindFP, nil
		}
	}
	return UnwindTables, nil
}

// effectiveCaps returns the effective capability set of this process.
func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, err
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}

// raiseNoFile lifts the soft descriptor limit to the hard one: Ember keeps a
// descriptor per distinct executable file it has seen mapped.
func raiseNoFile() {
	var r unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &r) == nil && r.Cur < r.Max {
		r.Cur = r.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &r)
	}
}

// explainLoad turns a load failure into a sentence about what is missing.
func explainLoad(err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("the kernel refused to load Ember's BPF programs (EPERM: missing privileges, or unprivileged BPF/lockdown): %w", err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("this kernel lacks a BPF feature Ember needs: %w", err)
	}
	return err
}
