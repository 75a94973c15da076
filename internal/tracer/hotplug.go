package tracer

import (
	"encoding/binary"
	"log/slog"

	"golang.org/x/sys/unix"
)

// CPU hotplug. On-CPU samples come from one cpu-clock perf event per CPU,
// opened at start for the CPUs online then. A CPU brought online later has
// no event, and a CPU taken offline loses its event for good: the kernel
// removes the CPU's events from its context when it goes down
// (kernel/events/core.c, perf_event_exit_cpu_context) and does not put them
// back when it comes up, so the event counts nothing ever after (on this
// 6.18, perf stat -C 1 shows <not counted> from the offlining on). So the
// tracer's watch, every watchInterval, opens an event for every online CPU
// that has none, and reopens the event of a CPU whose count has not moved
// since the last look: a cpu-clock event counts time, busy or idle, while
// it is scheduled, so a still count means a dead event. Samples are lost on
// a CPU between its coming online and the next watch (at most
// watchInterval), and counted nowhere: the kernel has no event to count
// them with.

// cpuEvent is the cpu-clock event of one CPU.
type cpuEvent struct {
	fd   int
	last uint64 // its count at the last watch
}

// count reads the event's count (read_format 0: one u64).
func (e *cpuEvent) count() (uint64, bool) {
	var b [8]byte
	if n, err := unix.Read(e.fd, b[:]); err != nil || n != 8 {
		return 0, false
	}
	return binary.NativeEndian.Uint64(b[:]), true
}

// watchCPUs opens events for CPUs that came online since the last look and
// reopens dead ones; it closes the events of CPUs that went offline.
func (t *Tracer) watchCPUs() {
	if t.cpus == nil || t.objs == nil || t.objs.OnCPUSample == nil {
		return
	}
	cpus, err := onlineCPUs()
	if err != nil {
		slog.Debug("watch CPUs", "err", err)
		return
	}
	online := make(map[int]bool, len(cpus))
	for _, cpu := range cpus {
		online[cpu] = true
		e := t.cpus[cpu]
		if e != nil {
			if n, ok := e.count(); ok && n != e.last {
				e.last = n
				continue
			}
			// Dead: the CPU went down and came back since the last look.
			unix.Close(e.fd)
			delete(t.cpus, cpu)
		}
		fd, err := openCPUClock(cpu, t.cfg.Frequency, t.objs.OnCPUSample)
		if err == nil {
			if err = enablePerf(fd); err != nil {
				unix.Close(fd)
			}
		}
		if err != nil {
			slog.Warn("a CPU came online but cannot be sampled", "cpu", cpu, "err", err)
			continue
		}
		t.cpus[cpu] = &cpuEvent{fd: fd}
		t.cpusOpened.Add(1)
		slog.Info("sampling a CPU brought online", "cpu", cpu, "reopened", e != nil)
	}
	for cpu, e := range t.cpus {
		if !online[cpu] {
			unix.Close(e.fd)
			delete(t.cpus, cpu)
		}
	}
}

// CPUsOpened returns how many CPU events were opened after start: CPUs
// brought online, or back online, while the tracer ran.
func (t *Tracer) CPUsOpened() uint64 { return t.cpusOpened.Load() }
