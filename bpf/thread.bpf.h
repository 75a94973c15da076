/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The off-CPU records of each thread, included by ember.bpf.c before
 * pending.bpf.h and offcpu.bpf.h: the hot part every context switch reads and
 * writes (offcpu_hot), and the rest, which only kept blocks touch
 * (offcpu_task), in task storage or, under raw_tp, a hash by thread ID.
 */

/* The per-thread state every context switch touches: kept small, and where
 * pid_max allows in an array indexed by thread ID, whose lookup the verifier
 * inlines (a task-storage lookup is a helper call, twice per switch). */
struct offcpu_hot {
	__u64 start_ns; /* 0: not blocked (or not measured) */
	__u32 rng;      /* xorshift32 state of the thread's sampling draws */
	__u8 kind;      /* enum sample_kind of the block in progress */
	__u8 flags;     /* HOT_* */
	__u8 capture;   /* the block in progress: its capture shift, or UNCAPTURED */
	__u8 runq_shift; /* the capture shift of its next preemption (runq_shift) */
};
#define HOT_PENDING 1 /* a kept block waits for its user stack */
#define HOT_USTACK 2  /* the block in progress has its user stack already */
#define HOT_WOKEN 4   /* --wakers: the block's wakeup was seen, and decided */
#define HOT_KEEP 8    /* --wakers: ... and the block is kept (its waker taken) */
#define HOT_NOTED 16  /* its process was told to user space (note_process);
		       * kept from block to block, cleared when the thread exits */
/* offcpu_hot.capture: the block in progress had its stacks taken at
 * switch-out with probability 2^-capture, or not at all (UNCAPTURED); see
 * take_at_switch_out. */
#define UNCAPTURED 0xff

/* The rest of a thread's record, touched by kept blocks only (and by the
 * fallback methods at switch-out). */
struct offcpu_task {
	struct offcpu_hot hot; /* used when there is no offcpu_hot array */
	__s64 ustack;    /* user stack taken at switch-out (HOT_USTACK) */
	__u32 gen;       /* live_gen() when ustack was taken */
	__u32 uflags;    /* sample_key.user_flags of ustack */
	__u64 weight;    /* the pending block's weighted duration */
	__u32 pkind;     /* its kind */
	__u32 nr_kips;   /* its kernel stack depth */
	__u64 kips[MAX_KSTACK_DEPTH];
	/* --wakers: who woke the block in progress (HOT_KEEP), or the pending
	 * one (pwoken). */
	__u64 wk_dw;       /* the block's length at its wakeup (> 0) */
	__s64 wk_ustack;   /* the waker's user stack key, or a negative errno */
	__s64 wk_kstack;   /* the waker's kernel stack key, or a negative errno */
	__u32 wk_pid;
	__u32 wk_flags;    /* WAKER_WOKE | user_flags of wk_ustack */
	__u32 wk_gen;      /* live_gen() when the waker's stacks were stored */
	__u32 pwoken;      /* the pending block carries the waker above */
	char wk_comm[TASK_COMM_LEN];
};

/* Set by user space when offcpu_hot has an entry for every possible thread
 * ID (pid_max entries; up to 2^20, 16 MiB). */
const volatile bool hot_by_tid = false;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* resized by user space to pid_max */
	__type(key, __u32);
	__type(value, struct offcpu_hot);
} offcpu_hot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct offcpu_task);
} offcpu_tasks SEC(".maps");

/*
 * Under raw_tp (kernels without tp_btf, or --offcpu-method raw-tp) the
 * switch program gets plain pointers, which task storage does not take: the
 * per-thread records live in this hash, keyed by thread ID, and leave it when
 * the thread exits.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct offcpu_task);
} offcpu_threads SEC(".maps");

/* A zeroed record to create offcpu_threads entries from: too large for the
 * BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct offcpu_task);
} offcpu_zero SEC(".maps");

/* TASK_READ reads a task_struct field: directly from a tp_btf argument, with
 * a CO-RE probe read from a raw_tp one. raw is a constant, so only one of
 * the two is compiled. */
#define TASK_READ(raw, p, f) ((raw) ? BPF_CORE_READ(p, f) : (p)->f)

/* thread_record returns task's record: task storage under tp_btf, the
 * offcpu_threads entry under raw_tp; create makes one if there is none. */
static __always_inline struct offcpu_task *thread_record(bool raw, struct task_struct *task, __u32 tid,
							 bool create)
{
	if (!raw)
		return bpf_task_storage_get(&offcpu_tasks, task, 0,
					    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
	struct offcpu_task *t = bpf_map_lookup_elem(&offcpu_threads, &tid);
	if (t || !create)
		return t;
	__u32 zero = 0;
	struct offcpu_task *z = bpf_map_lookup_elem(&offcpu_zero, &zero);
	if (!z)
		return 0;
	bpf_map_update_elem(&offcpu_threads, &tid, z, BPF_NOEXIST);
	return bpf_map_lookup_elem(&offcpu_threads, &tid);
}

/* hot_record returns the hot part of a thread's record. */
static __always_inline struct offcpu_hot *hot_record(bool raw, struct task_struct *task, __u32 tid, bool create)
{
	if (hot_by_tid)
		return bpf_map_lookup_elem(&offcpu_hot, &tid);
	struct offcpu_task *t = thread_record(raw, task, tid, create);
	return t ? &t->hot : 0;
}
