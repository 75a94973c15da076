package tracer

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Capability is one Linux capability Ember uses beyond CAP_BPF and
// CAP_PERFMON (which Preflight requires): without it Ember still runs, and
// Lost says which frames are lost, so that a partial profile says why it is
// partial instead of showing truncated or unnamed stacks unexplained.
type Capability struct {
	Name string
	Bit  uint // include/uapi/linux/capability.h
	Lost string
	// Needed reports whether this host needs it at all (nil: always).
	Needed func() bool
}

// Capability numbers, include/uapi/linux/capability.h.
const (
	capDACReadSearch     = 2
	capSysPtrace         = 19
	capSyslog            = 34
	capCheckpointRestore = 40
)

// OptionalCapabilities are the capabilities that, with CAP_BPF and
// CAP_PERFMON, let a non-root Ember profile as root does (README,
// deploy/README.md), each with what is lost without it.
var OptionalCapabilities = []Capability{
	{
		Name: "CAP_SYSLOG", Bit: capSyslog,
		Lost: "kernel frames are not named: /proc/kallsyms shows zero addresses (kernel.kptr_restrict, or kernel.perf_event_paranoid above 1)",
		// The kernel shows the addresses without it at kptr_restrict 0
		// and perf_event_paranoid <= 1 (kallsyms_show_value()).
		Needed: kallsymsHidden,
	},
	{
		Name: "CAP_SYS_PTRACE", Bit: capSysPtrace,
		Lost: "processes of other users are neither symbolized nor walked with unwind tables: their /proc/PID/maps, root and exe are closed (ptrace_may_access)",
	},
	{
		Name: "CAP_CHECKPOINT_RESTORE", Bit: capCheckpointRestore,
		Lost: "frames in binaries deleted or replaced since they were mapped, and in memfd code, are not named and their stacks are walked with frame pointers only: /proc/PID/map_files is closed",
	},
	{
		Name: "CAP_DAC_READ_SEARCH", Bit: capDACReadSearch,
		Lost: "frames in binaries only their owner may read (and under directories closed to Ember's user) are not named and walked with frame pointers only",
	},
}

// CapabilityNotes returns one sentence per optional capability this process
// lacks and this host needs: what is lost without it. Root (or any process
// with CAP_SYS_ADMIN, which covers map_files, and every capability) gets
// none.
func CapabilityNotes() []string {
	caps, err := effectiveCaps()
	if err != nil {
		return []string{fmt.Sprintf("cannot read this process's capabilities (%v): some frames may be lost for want of one", err)}
	}
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	var notes []string
	for _, c := range OptionalCapabilities {
		if has(c.Bit) || (c.Bit == capCheckpointRestore && has(capSysAdmin)) {
			continue
		}
		if c.Needed != nil && !c.Needed() {
			continue
		}
		notes = append(notes, fmt.Sprintf("without %s, %s", c.Name, c.Lost))
	}
	return notes
}

// kallsymsHidden reports whether /proc/kallsyms shows this process zero
// addresses.
func kallsymsHidden() bool {
	f, err := os.Open("/proc/kallsyms")
	if err != nil {
		return true
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for i := 0; i < 64 && sc.Scan(); i++ {
		addr, _, _ := strings.Cut(sc.Text(), " ")
		if strings.Trim(addr, "0") != "" {
			return false
		}
	}
	return true
}
