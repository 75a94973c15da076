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
	__u32 _pad;
	__s64 user_stack;   /* on-CPU: id in the stacks map; off-CPU: key in the
	                     * offcpu_ustacks map; negative: an errno */
	__s64 kern_stack;   /* on-CPU: id in the stacks map; off-CPU: key in the
	                     * offcpu_kstacks map; negative: an errno */
	char comm[TASK_COMM_LEN]; /* the thread's name at sample time */
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
	STAT_MAX,
};

enum event_type {
	EVENT_NEW_PROCESS = 1, /* first sample of a process: read its mappings now */
	EVENT_EXEC = 2,        /* the process exec'd: its mappings changed */
	EVENT_EXIT = 3,        /* the process exited */
};

struct event {
	__u32 type; /* enum event_type */
	__u32 pid;
};

#endif /* __EMBER_H__ */
