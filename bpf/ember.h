/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Types shared between Ember's BPF programs and user space. bpf2go turns each
 * of them into a Go struct (see gen.go), so the layout is written once, here.
 * Every struct is padded explicitly: Go and C must agree byte for byte.
 */
#ifndef __EMBER_H__
#define __EMBER_H__

#define TASK_COMM_LEN 16

/* What a sample_key counts. */
enum sample_kind {
	KIND_ONCPU = 0,       /* a cpu-clock tick on CPU */
	KIND_OFFCPU_SLEEP = 1, /* blocked in an interruptible sleep (TASK_INTERRUPTIBLE) */
	KIND_OFFCPU_DISK = 2, /* blocked in an uninterruptible sleep (TASK_UNINTERRUPTIBLE) */
	KIND_OFFCPU_RUNQ = 3, /* preempted while runnable: waiting for a CPU */
	KIND_OFFCPU_OTHER = 4, /* any other state (stopped, traced, ...) */
};

/* One row of the counts maps: a thread, its two stacks and what kind of time. */
struct sample_key {
	__u32 pid;          /* tgid, the process */
	__u32 tid;          /* the thread */
	__u32 kind;         /* enum sample_kind */
	__u32 user_flags;   /* USER_STACK_HASHED | enum unwind_reason of the walk */
	__s64 user_stack;   /* on-CPU: id in the stacks map, or with
	                     * USER_STACK_HASHED key in the hashed_ustacks map;
	                     * off-CPU: key in the hashed_ustacks map; negative: an errno */
	__s64 kern_stack;   /* on-CPU: id in the stacks map; off-CPU: key in the
	                     * offcpu_kstacks map; negative: an errno */
	char comm[TASK_COMM_LEN]; /* the thread's name at sample time */
	/* Off-CPU with --wakers: who ended the block (waker_flags & WAKER_WOKE
	 * says it was woken; else it was preempted, or woken unseen). */
	__u32 waker_pid;    /* the waking thread's process (0: an interrupt in idle) */
	__u32 waker_flags;  /* WAKER_WOKE | user_flags of waker_user_stack */
	__s64 waker_user_stack; /* key in the hashed_ustacks map, or a negative errno */
	__s64 waker_kern_stack; /* key in the offcpu_kstacks map, or a negative errno */
	char waker_comm[TASK_COMM_LEN];
};

/* sample_key.waker_flags: bits 0-8 as user_flags, for the waker's stack. */
#define WAKER_WOKE (1 << 9)

/* sample_key.user_flags: bits 0-7 the enum unwind_reason of a table walk
 * (0: complete), bit 8 the stack is in the hashed_ustacks map (a table walk). */
#define USER_STACK_REASON_MASK 0xff
#define USER_STACK_HASHED (1 << 8)

/* Why a table walk of a user stack stopped (unwind.Reason, unwind/doc.go). */
enum unwind_reason {
	REASON_COMPLETE = 0,
	REASON_NO_MAPPING,
	REASON_NO_ROW,
	REASON_UNSUPPORTED,
	REASON_READ_FAILED,
	REASON_BAD_FRAME,
	REASON_MAX_FRAMES,
	REASON_BAD_TABLE,
	REASON_MAX,
};

/* The errno values the programs store in a sample_key's stack fields, or
 * compare helpers' results with, declared once for C and Go: bpf2go exports
 * the enum (-type errno) and user space names losses by it (values of
 * include/uapi/asm-generic/errno-base.h and errno.h). */
enum errno {
	ENOENT = 2,   /* no stack to take: a kernel thread's user stack */
	ENOMEM = 12,  /* the stack's map is full, or no scratch */
	EFAULT = 14,  /* the stack was unreadable */
	EBUSY = 16,   /* task work already queued */
	EEXIST = 17,  /* a stack collision: another stack has its bucket or hash */
	EINVAL = 22,
	ENOSPC = 28,  /* the stack copies' ring buffer is full (frame pointers instead) */
	ENODATA = 61, /* the kernel did not report the switch that ended the block */
	EOPNOTSUPP = 95, /* an architecture the table walker does not know */
	ESTALE = 116, /* the stack was stored before a drain flipped the sets */
};

struct sample_value {
	__u64 count; /* on-CPU: ticks; off-CPU: blocks kept */
	__u64 ns;    /* off-CPU: duration-weighted nanoseconds */
};

/* Indexes into the per-CPU stats array: every way a sample can be lost. */
enum stat {
	STAT_SAMPLES = 0,           /* on-CPU ticks seen after filtering */
	STAT_USTACK_EEXIST,         /* user stack dropped: stack map bucket collision */
	STAT_USTACK_EFAULT,         /* user stack unreadable (no frame, fault) */
	STAT_USTACK_ENOMEM,         /* user stack dropped: stack map full */
	STAT_USTACK_OTHER,
	STAT_KSTACK_EEXIST,
	STAT_KSTACK_EFAULT,         /* no kernel stack: the tick came in user mode */
	STAT_KSTACK_ENOMEM,
	STAT_KSTACK_OTHER,
	STAT_COUNTS_FULL,           /* counts map full: sample lost entirely */
	STAT_EVENTS_LOST,           /* new-process notification ring buffer full */
	STAT_OFFCPU_BLOCKS,         /* off-CPU blocks that ended (after filtering) */
	STAT_OFFCPU_KEPT,           /* blocks kept by duration-weighted sampling */
	STAT_OFFCPU_STORAGE_FULL,   /* no per-thread storage: a block not measured */
	STAT_OFFCPU_STALE,          /* user stack taken before a set flip: dropped */
	STAT_OFFCPU_KSTACK_FULL,    /* off-CPU kernel stack map full */
	STAT_OFFCPU_KSTACK_EFAULT,  /* blocked thread's kernel stack unreadable */
	STAT_OFFCPU_USTACK_FULL,    /* off-CPU user stack map full */
	STAT_OFFCPU_USTACK_EFAULT,  /* off-CPU user stack unreadable */
	STAT_UNWIND_WALKS,          /* user stacks walked with unwind tables */
	/* Table walks that stopped early, in enum unwind_reason order:
	 * STAT_UNWIND_NO_MAPPING + reason - 1. */
	STAT_UNWIND_NO_MAPPING,     /* PC in no mapping the process entry knows */
	STAT_UNWIND_NO_ROW,         /* no CFI covers the PC */
	STAT_UNWIND_UNSUPPORTED,    /* a CFA rule the tables cannot express */
	STAT_UNWIND_READ_FAILED,    /* reading the user stack faulted */
	STAT_UNWIND_BAD_FRAME,      /* the stack did not move up */
	STAT_UNWIND_MAX_FRAMES,     /* deeper than 127 frames */
	STAT_UNWIND_BAD_TABLE,      /* a table entry out of range */
	STAT_UNWIND_USTACK_FULL,    /* walked stack not stored: hashed_ustacks map full */
	STAT_OFFCPU_RESUME_FAILED,  /* no resume work scheduled: a kept block waits
	                             * for the thread's next switch-out */
	STAT_OFFCPU_NO_CLOCK,       /* runqueue clock unreadable: switch not measured */
	STAT_PID_FILTER_FULL,       /* a followed fork not added: pids map full */
	STAT_KSTACK_HASH_COLLISION, /* off-CPU kernel stack dropped: another has its hash */
	STAT_USTACK_HASH_COLLISION, /* hashed user stack dropped: another has its hash */
	STAT_OFFCPU_UNCAPTURED,     /* blocks whose stacks were not taken at switch-out:
	                             * sampled out, and the others weighted for them */
	STAT_OFFCPU_SWITCH_IN_UNSEEN, /* blocks whose end no sched_switch reported:
	                               * counted without stacks (offcpu.bpf.h) */
	STAT_MAX,
};

enum event_type {
	EVENT_NEW_PROCESS = 1, /* first sample of a process: read its mappings now */
	EVENT_EXEC = 2,        /* the process exec'd: its mappings changed */
	EVENT_EXIT = 3,        /* the process exited */
	EVENT_MAPS_CHANGED = 4, /* a table walk met code outside the mappings
	                         * user space loaded: read them again */
};

struct event {
	__u32 type; /* enum event_type */
	__u32 pid;
};

#endif /* __EMBER_H__ */
