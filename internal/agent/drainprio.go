package agent

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// drainBoost is how much nicer than the rest of the agent the drain's
// thread runs. The drain is what must be on time (a late one lets the
// kernel maps fill: collisions, lost samples), and it is a small part of
// the agent's CPU; on a loaded host (the 10-minute soaks at load 7-10 on
// two CPUs: 1-4 drains a run 2-5.2 s apart) it waited for a CPU behind
// everything else, the agent's own symbolizer included. Nice -5 weighs
// about three times nice 0 in the kernel's scheduler.
const drainBoost = 5

// boostDrainThread locks the calling goroutine to its thread and raises
// that thread's priority by drainBoost, where the kernel allows it
// (CAP_SYS_NICE, or an RLIMIT_NICE that permits it). The returned function
// puts the thread's priority back and unlocks it; err says why the
// priority was left as it was (the drain then runs as before).
func boostDrainThread() (restore func(), err error) {
	runtime.LockOSThread()
	tid := unix.Gettid()
	raw, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		runtime.UnlockOSThread()
		return func() {}, fmt.Errorf("drain thread priority: %w", err)
	}
	old := 20 - raw // the system call's value is 20 - nice
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, max(old-drainBoost, -20)); err != nil {
		runtime.UnlockOSThread()
		return func() {}, fmt.Errorf("drain thread priority: %w", err)
	}
	return func() {
		_ = unix.Setpriority(unix.PRIO_PROCESS, tid, old)
		runtime.UnlockOSThread()
	}, nil
}
