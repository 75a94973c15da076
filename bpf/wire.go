// The types and constants Ember shares with its BPF programs, generated from
// ember.h by bpf2go: the wire types, sample kinds, event types and counters.

package bpf

// The wire types shared with the kernel, generated from ember.h.
type (
	SampleKey   = emberSampleKey
	SampleValue = emberSampleValue
	Event       = emberEvent
	KStack      = emberKstack
	UStack      = emberUstack
)

// Sample kinds (enum sample_kind in ember.h).
const (
	KindOnCPU       = uint32(emberSampleKindKIND_ONCPU)
	KindOffCPUSleep = uint32(emberSampleKindKIND_OFFCPU_SLEEP)
	KindOffCPUDisk  = uint32(emberSampleKindKIND_OFFCPU_DISK)
	KindOffCPURunQ  = uint32(emberSampleKindKIND_OFFCPU_RUNQ)
	KindOffCPUOther = uint32(emberSampleKindKIND_OFFCPU_OTHER)
)

// Event types (enum event_type in ember.h).
const (
	EventNewProcess = uint32(emberEventTypeEVENT_NEW_PROCESS)
	EventExec       = uint32(emberEventTypeEVENT_EXEC)
	EventExit       = uint32(emberEventTypeEVENT_EXIT)
	// EventMapsChanged: a table walk met a PC outside the mappings of the
	// process's unwind_procs entry.
	EventMapsChanged = uint32(emberEventTypeEVENT_MAPS_CHANGED)
)

// StatNames names the per-CPU stats counters, indexed as enum stat.
var StatNames = [...]string{
	emberStatSTAT_SAMPLES:                 "samples",
	emberStatSTAT_USTACK_EEXIST:           "user_stack_collision",
	emberStatSTAT_USTACK_EFAULT:           "user_stack_fault",
	emberStatSTAT_USTACK_ENOMEM:           "user_stack_map_full",
	emberStatSTAT_USTACK_OTHER:            "user_stack_other",
	emberStatSTAT_KSTACK_EEXIST:           "kernel_stack_collision",
	emberStatSTAT_KSTACK_EFAULT:           "kernel_stack_none",
	emberStatSTAT_KSTACK_ENOMEM:           "kernel_stack_map_full",
	emberStatSTAT_KSTACK_OTHER:            "kernel_stack_other",
	emberStatSTAT_COUNTS_FULL:             "counts_map_full",
	emberStatSTAT_EVENTS_LOST:             "process_events_lost",
	emberStatSTAT_OFFCPU_BLOCKS:           "offcpu_blocks",
	emberStatSTAT_OFFCPU_KEPT:             "offcpu_blocks_kept",
	emberStatSTAT_OFFCPU_STORAGE_FULL:     "offcpu_storage_full",
	emberStatSTAT_OFFCPU_STALE:            "offcpu_stack_stale",
	emberStatSTAT_OFFCPU_KSTACK_FULL:      "offcpu_kernel_stack_map_full",
	emberStatSTAT_OFFCPU_KSTACK_EFAULT:    "offcpu_kernel_stack_fault",
	emberStatSTAT_OFFCPU_USTACK_FULL:      "offcpu_user_stack_map_full",
	emberStatSTAT_OFFCPU_USTACK_EFAULT:    "offcpu_user_stack_fault",
	emberStatSTAT_UNWIND_WALKS:            "unwind_walks",
	emberStatSTAT_UNWIND_NO_MAPPING:       "unwind_truncated_no_mapping",
	emberStatSTAT_UNWIND_NO_ROW:           "unwind_truncated_no_row",
	emberStatSTAT_UNWIND_UNSUPPORTED:      "unwind_truncated_unsupported_rule",
	emberStatSTAT_UNWIND_READ_FAILED:      "unwind_truncated_read_failed",
	emberStatSTAT_UNWIND_BAD_FRAME:        "unwind_truncated_bad_frame",
	emberStatSTAT_UNWIND_MAX_FRAMES:       "unwind_truncated_max_frames",
	emberStatSTAT_UNWIND_BAD_TABLE:        "unwind_truncated_bad_table",
	emberStatSTAT_UNWIND_USTACK_FULL:      "unwind_user_stack_map_full",
	emberStatSTAT_OFFCPU_RESUME_FAILED:    "offcpu_resume_work_failed",
	emberStatSTAT_OFFCPU_NO_CLOCK:         "offcpu_clock_unreadable",
	emberStatSTAT_PID_FILTER_FULL:         "pid_filter_full",
	emberStatSTAT_KSTACK_HASH_COLLISION:   "offcpu_kernel_stack_collision",
	emberStatSTAT_USTACK_HASH_COLLISION:   "hashed_user_stack_collision",
	emberStatSTAT_OFFCPU_UNCAPTURED:       "offcpu_blocks_uncaptured",
	emberStatSTAT_OFFCPU_SWITCH_IN_UNSEEN: "offcpu_switch_in_unseen",
}

// UnwindTruncatedStat names the counter of table walks that stopped early
// for reason r, an enum unwind_reason (unwind.Reason): "" for
// REASON_COMPLETE and values past the enum. User space counts the walks of
// stack copies under the same names.
func UnwindTruncatedStat(r uint8) string {
	if r == 0 || int(r) >= NumUnwindReasons {
		return ""
	}
	return StatNames[emberStatSTAT_UNWIND_NO_MAPPING+emberStat(r)-1]
}

// sample_key.user_flags: the low byte is the unwind.Reason a table walk
// stopped with; UserStackHashed says the stack is in the hashed_ustacks map.
const (
	UserStackReasonMask = 0xff
	UserStackHashed     = 1 << 8
)

// WakerWoke in sample_key.waker_flags says the off-CPU block ended in a
// wakeup whose waker is in the waker_* fields; its low bits are the
// user_flags of the waker's user stack.
const WakerWoke = 1 << 9

// NumUnwindReasons is the number of enum unwind_reason values (unwind.Reason).
const NumUnwindReasons = int(emberUnwindReasonREASON_MAX)

// MaxKStackDepth is the depth of the off-CPU kernel stacks (MAX_KSTACK_DEPTH).
const MaxKStackDepth = len(emberKstack{}.Ips)
