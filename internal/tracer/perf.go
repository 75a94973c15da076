package tracer

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// openCPUClock opens a cpu-clock software event in frequency mode on one CPU,
// for every task, and attaches prog to it (PERF_EVENT_IOC_SET_BPF), as
// `perf record -F hz -a` would open it.
func openCPUClock(cpu, hz int, prog *ebpf.Program) (int, error) {
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_SOFTWARE,
		Config: unix.PERF_COUNT_SW_CPU_CLOCK,
		Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Sample: uint64(hz),
		Bits:   unix.PerfBitFreq | unix.PerfBitDisabled,
	}
	fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("perf_event_open cpu-clock on CPU %d: %w", cpu, err)
	}
	if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_SET_BPF, prog.FD()); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("attach BPF program to perf event on CPU %d: %w", cpu, err)
	}
	return fd, nil
}

func enablePerf(fd int) error {
	return unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0)
}

// samplerLater says whether to sample with frame pointers while the table
// walker is verified (bpf.Config.TableSamplerLater): where the kernel has
// bpf_loop (a probe load), so that the walker most likely loads; elsewhere
// (5.10) the walker is refused at once, as before, and nothing is swapped.
var samplerLater = sync.OnceValue(func() bool {
	return features.HaveProgramHelper(ebpf.PerfEvent, asm.FnLoop) == nil
})

// swapInTableWalker loads the table walker that Start left for later and
// moves each CPU's cpu-clock event to it: a new event attached to the
// walker is enabled as soon as the old one, which ran the frame-pointer
// program, is disabled, so no tick is sampled twice and at most the ticks
// of those few microseconds are missed. The verifier took ~280 ms of CPU
// on the walker (6-10 ms since its searches are global functions; 9 ms on
// the frame-pointer program), time in which
// samples are now taken (with frame pointers, counted and marked as
// unwind_fp_fallback by Drain) instead of none.
func (t *Tracer) swapInTableWalker() error {
	prog, err := t.objs.LoadTableSampler()
	if err != nil {
		return fmt.Errorf("load the table walker: %w", err)
	}
	for cpu, e := range t.cpus {
		fd, err := openCPUClock(cpu, t.cfg.Frequency, prog)
		if err != nil {
			return err
		}
		_ = unix.IoctlSetInt(e.fd, unix.PERF_EVENT_IOC_DISABLE, 0)
		if err := enablePerf(fd); err != nil {
			unix.Close(fd)
			return fmt.Errorf("enable perf event: %w", err)
		}
		unix.Close(e.fd)
		e.fd, e.last = fd, 0
	}
	return nil
}

// onlineCPUs parses /sys/devices/system/cpu/online ("0-3,5").
func onlineCPUs() ([]int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, fmt.Errorf("read online CPUs: %w", err)
	}
	return parseCPUList(strings.TrimSpace(string(b)))
}

func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		lo, hi, found := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if found {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("cpu list %q: %w", s, err)
			}
		}
		if b < a || b-a > 1<<16 {
			return nil, fmt.Errorf("cpu list %q: bad range", s)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// cpuTime is this process's user+system time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
