package agent

import (
	"time"

	"github.com/emberprof/ember/internal/tracer"
)

// tracerConfig profiles one process at a high rate, so a few seconds give
// enough samples.
func tracerConfig(pid int) tracer.Config {
	return tracer.Config{Frequency: 499, PIDs: []int{pid}, OffCPUThreshold: time.Millisecond}
}
