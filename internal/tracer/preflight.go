package tracer

import (
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/bpf"
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
// programs and open perf events and that the kernel's BTF is at hand (the
// kernel's own, or btfFile). The error is one sentence naming what is
// missing.
func Preflight(btfFile string) error {
	caps, err := effectiveCaps()
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	if !has(capSysAdmin) && !(has(capBPF) && has(capPerfmon)) {
		return &missing{"profiling needs root, or the CAP_BPF and CAP_PERFMON capabilities, to load BPF programs and open perf events"}
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil && btfFile == "" {
		return &missing{"this kernel has no BTF (/sys/kernel/btf/vmlinux is missing: it needs CONFIG_DEBUG_INFO_BTF=y, or a BTF file for it given with --btf or EMBER_BTF)"}
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("cannot raise RLIMIT_MEMLOCK for BPF maps: %w", err)
	}
	raiseNoFile()
	return nil
}

// loadKernelBTF reads the kernel's BTF from file, for CO-RE relocations on
// kernels that do not publish their own (BTFHub-style files, or one
// extracted from the kernel image); "" leaves cilium/ebpf to read
// /sys/kernel/btf/vmlinux. Programs that attach by BTF (tp_btf) or call
// kfuncs still need the kernel's own, so on such kernels auto picks the
// raw_tp programs.
func loadKernelBTF(file string) (*btf.Spec, error) {
	if file == "" {
		return nil, nil
	}
	spec, err := btf.LoadSpec(file)
	if err != nil {
		return nil, fmt.Errorf("read kernel BTF from %s: %w", file, err)
	}
	return spec, nil
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

// ReleaseLoadCaches frees what loading keeps for the next load (the parsed
// BPF object, the kernel's decoded BTF: about 6 MiB of Go heap), for a
// process that loads once and runs on, as the agent does once started.
func ReleaseLoadCaches() { bpf.ReleaseCaches() }
