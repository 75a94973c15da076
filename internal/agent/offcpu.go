package agent

import (
	"fmt"
	"strings"

	"github.com/emberprof/ember/internal/tracer"
)

// ParseOffCPUState turns --offcpu-state into the kernel's kind mask.
func ParseOffCPUState(s string) (uint32, error) {
	var mask uint32
	for _, part := range strings.Split(s, ",") {
		switch strings.TrimSpace(part) {
		case "all", "":
			mask |= 0xff
		case "sleep", "interruptible":
			mask |= 1 << tracer.KindOffCPUSleep
		case "disk", "uninterruptible":
			mask |= 1 << tracer.KindOffCPUDisk
		case "runnable", "runq", "preempted":
			mask |= 1 << tracer.KindOffCPURunQ
		case "other":
			mask |= 1 << tracer.KindOffCPUOther
		default:
			return 0, fmt.Errorf("unknown --offcpu-state %q (want all, sleep, disk, runnable, other)", part)
		}
	}
	return mask, nil
}
