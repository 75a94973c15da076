package agent

import (
	"fmt"
	"strings"

	"github.com/emberprof/ember/bpf"
)

// ParseOffCPUState turns --offcpu-state into the kernel's kind mask.
func ParseOffCPUState(s string) (uint32, error) {
	var mask uint32
	for _, part := range strings.Split(s, ",") {
		switch strings.TrimSpace(part) {
		case "all", "":
			mask |= 0xff
		case "sleep", "interruptible":
			mask |= 1 << bpf.KindOffCPUSleep
		case "disk", "uninterruptible":
			mask |= 1 << bpf.KindOffCPUDisk
		case "runnable", "runq", "preempted":
			mask |= 1 << bpf.KindOffCPURunQ
		case "other":
			mask |= 1 << bpf.KindOffCPUOther
		default:
			return 0, fmt.Errorf("unknown --offcpu-state %q (want all, sleep, disk, runnable, other)", part)
		}
	}
	return mask, nil
}
