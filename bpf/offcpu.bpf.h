/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Off-CPU accounting, included by ember.bpf.c.
 *
 * A block starts when sched_switch takes a thread off the CPU and ends when
 * sched_switch puts it back. Start times live in one global, per-thread
 * slot (offcpu_hot, indexed by thread ID, or task-local storage), so a thread
 * that migrates between CPUs is measured from one clock read to the next and
 * nothing can inflate it.
 *
 * Blocks are kept with probability min(1, d/T) and weighted max(d, T), an
 * unbiased estimate of blocked time per stack whose cost is bounded by T
 * (DESIGN.md). Stacks are taken only for kept blocks, when the thread runs
 * again:
 *   - the kernel stack with bpf_get_task_stack(next) at switch-in, before the
 *     thread has run: it still shows where it blocked;
 *   - the user stack when the thread is back in its own context with the user
 *     registers it blocked with. Where the kernel has bpf_task_work (6.18),
 *     a callback queued at switch-in runs on the thread's way back to user
 *     mode, whatever brought it into the kernel (system call, page fault,
 *     preemption): nothing runs on the common path but sched_switch itself.
 *     Elsewhere, tp_btf/sys_exit takes it for blocks inside a system call; a
 *     thread preempted in user mode has it taken at switch-out (it is current
 *     then). Either way, a block whose user stack is still missing at the
 *     thread's next switch-out is attributed then.
 * (kernel/sched/core.c: trace_sched_switch(preempt, prev, next, prev_state)
 * fires in __schedule() with current == prev.)
 */

#define TASK_RUNNING 0x0000
#define TASK_INTERRUPTIBLE 0x0001
#define TASK_UNINTERRUPTIBLE 0x0002

/* The per-thread state every context switch touches: kept small, and where
 * pid_max allows in an array indexed by thread ID, whose lookup the verifier
 * inlines (a task-storage lookup is a helper call, twice per switch). */
struct offcpu_hot {
	__u64 start_ns; /* 0: not blocked (or not measured) */
	__u32 rng;      /* xorshift32 state of the thread's sampling draws */
	__u8 kind;      /* enum sample_kind of the block in progress */
	__u8 flags;     /* HOT_* */
	__u16 unused;
};
#define HOT_PENDING 1 /* a kept block waits for its user stack */
#define HOT_USTACK 2  /* the block in progress has its user stack already */
#define HOT_WOKEN 4   /* --wakers: the block's wakeup was seen, and decided */
#define HOT_KEEP 8    /* --wakers: ... and the block is kept (its waker taken) */
#define TASK_DEAD 0x80

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

/* Set by user space where the scheduler's clock is one clock on every CPU
 * (a stable TSC, arm64's timer): block times are then read from this CPU's
 * runqueue clock, which __schedule() has just updated, instead of
 * bpf_ktime_get_ns(), which costs more than the rest of the program on
 * some virtual machines. It is also the clock the kernel charges CPU time
 * with, so on-CPU plus off-CPU time adds up to the thread's wall time. */
const volatile bool rq_clock = false;

/* The runqueue of the CPU a task is on, reached through its entity's
 * cfs_rq (CONFIG_FAIR_GROUP_SCHED); set_task_rq() keeps it current for
 * tasks of every class. */
struct rq___ember {
	__u64 clock;
} __attribute__((preserve_access_index));
struct cfs_rq___ember {
	struct rq___ember *rq;
} __attribute__((preserve_access_index));
struct sched_entity___ember {
	struct cfs_rq___ember *cfs_rq;
} __attribute__((preserve_access_index));
struct task_struct___sched {
	struct sched_entity___ember se;
} __attribute__((preserve_access_index));

/* switch_clock returns the time of this context switch, 0 if unreadable.
 * Both ends of a block are read from the same clock. */
static __always_inline __u64 switch_clock(bool raw, struct task_struct *next)
{
	if (!raw && rq_clock && bpf_core_field_exists(((struct cfs_rq___ember *)0)->rq)) {
		struct task_struct___sched *t = (void *)next;
		return t->se.cfs_rq->rq->clock;
	}
	return bpf_ktime_get_ns();
}

/* draw returns a uniform 32-bit variate (never 0) from the thread's own
 * xorshift32 generator: a few instructions, where bpf_get_prandom_u32() is
 * a call. */
static __always_inline __u64 draw(struct offcpu_hot *h)
{
	__u32 x = h->rng;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	h->rng = x;
	return x;
}

/*
 * offcpu_cpu_pending is set, on a CPU, while the task running there has a
 * kept block waiting for its user stack. At most one can: the task switched
 * in last, which runs until the next sched_switch on that CPU. sys_exit runs
 * on every system call of every task; the flag lets it return after one
 * per-CPU load in the common case. Per CPU, not a global array indexed by
 * CPU, so that the stores at every switch never share a cache line between
 * CPUs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} offcpu_cpu_pending SEC(".maps");

static __always_inline __u32 *cpu_pending(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&offcpu_cpu_pending, &zero);
}

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

/*
 * How the sched_switch program finds out where a kept block's thread is in
 * user space (a compile-time constant of each program variant):
 *   HOOK_TW:      a bpf_task_work callback, bpf_task_work_schedule_resume
 *                 (Linux 6.19 on, four arguments);
 *   HOOK_TW_IMPL: the same through bpf_task_work_schedule_resume_impl, its
 *                 name and five-argument form in Linux 6.18 (later kernels
 *                 keep the name with another signature, so each form is a
 *                 program of its own: one that fails to load does not take
 *                 the others with it);
 *   HOOK_SYS_EXIT: tp_btf/sys_exit, on every system call (Linux 5.11);
 *   HOOK_RAW:     raw_tp programs throughout, for kernels without tp_btf or
 *                 task storage (Linux 5.10).
 * The kfuncs are strong references: a program whose kfunc the kernel lacks
 * fails to load instead of loading with a call that does nothing.
 */
enum offcpu_hook { HOOK_SYS_EXIT, HOOK_RAW, HOOK_TW, HOOK_TW_IMPL };
#define HOOK_IS_TW(hook) ((hook) == HOOK_TW || (hook) == HOOK_TW_IMPL)

extern int bpf_task_work_schedule_resume(struct task_struct *task, struct bpf_task_work *tw, void *map__map,
					 bpf_task_work_callback_t callback) __ksym;
extern int bpf_task_work_schedule_resume_impl(struct task_struct *task, struct bpf_task_work *tw,
					      void *map__map, bpf_task_work_callback_t callback,
					      void *aux__prog) __ksym;

/* One task_work slot per thread that has had a kept block (the kernel's
 * bpf_task_work lives only in hash, LRU hash and array values). LRU: a slot
 * evicted while its work is queued cancels it, and that block falls back to
 * the thread's next switch-out. */
struct resume_work {
	struct bpf_task_work tw;
};
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct resume_work);
} offcpu_resume SEC(".maps");

static __always_inline __u32 block_kind(bool preempt, unsigned int state)
{
	if (preempt || state == TASK_RUNNING)
		return KIND_OFFCPU_RUNQ;
	if (state & TASK_UNINTERRUPTIBLE)
		return KIND_OFFCPU_DISK;
	if (state & TASK_INTERRUPTIBLE)
		return KIND_OFFCPU_SLEEP;
	return KIND_OFFCPU_OTHER;
}


/* kstack_key stores the kernel stack in t->kips (zero-padded) in the live
 * set's map under a hash of its frames and returns the hash (top bit
 * clear), or a negative errno. */
static __always_inline __s64 kstack_key(__u32 set, struct offcpu_task *t)
{
	if (t->nr_kips == 0)
		return -EFAULT;
	void *map = set ? (void *)&offcpu_kstacks1 : (void *)&offcpu_kstacks0;
	return STACK_STORE(map, t->kips, MAX_KSTACK_DEPTH, STAT_OFFCPU_KSTACK_FULL, STAT_KSTACK_HASH_COLLISION);
}

/* ustack_key stores current's user stack in the set's ustacks map
 * under a hash of its frames and returns the hash, or a negative errno. It
 * walks with unwind tables when the variant has them and the process has its
 * tables loaded (*uflags says so), else with frame pointers: from ctx under
 * raw_tp (bpf_get_current_task_btf needs Linux 5.11), else from current, so
 * that it also works in a task_work callback, which has no ctx. */
static __always_inline __s64 ustack_key(void *ctx, enum scratch_slot slot, bool raw, bool tables, __u32 set,
					__u32 *uflags)
{
	__u32 i = slot;

	*uflags = 0;
	if (tables) {
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		struct unwind_proc *proc = bpf_map_lookup_elem(&unwind_procs, &tgid);
		if (proc) {
			__u32 reason;
			__s64 k = unwind_user(UNWIND_SCRATCH_OFFCPU(slot), set, tgid, proc, &reason);
			*uflags = USER_STACK_HASHED | (reason & USER_STACK_REASON_MASK);
			return k;
		}
		__s64 c = copy_user_stack(tgid); /* stackcopy.bpf.h */
		if (c >= 0) {
			*uflags = USER_STACK_COPIED;
			return c;
		}
	}
	struct ustack *buf = bpf_map_lookup_elem(&ustack_scratch, &i);

	if (!buf)
		return -ENOMEM;
	/* The scratch holds an older stack: clear it, so the tail is zero. */
	__builtin_memset(buf, 0, sizeof(*buf));
	long n = raw ? bpf_get_stack(ctx, buf->ips, sizeof(buf->ips), BPF_F_USER_STACK)
		     : bpf_get_task_stack(bpf_get_current_task_btf(), buf->ips, sizeof(buf->ips),
					  BPF_F_USER_STACK);
	if (n <= 0) {
		stat_inc(STAT_OFFCPU_USTACK_EFAULT);
		return n < 0 ? n : -EFAULT;
	}
	void *map = set ? (void *)&ustacks1 : (void *)&ustacks0;
	return STACK_STORE(map, buf->ips, MAX_USTACK_DEPTH, STAT_OFFCPU_USTACK_FULL, STAT_USTACK_HASH_COLLISION);
}

/* emit_block counts a kept block in generation gen's set; with woken, t
 * holds its waker. */
static __always_inline void emit_block(__u32 gen, __u32 pid, __u32 tid, char *comm,
				       __s64 ustack, __u32 uflags, __s64 kstack, __u32 kind, __u64 weight,
				       struct offcpu_task *t, bool woken)
{
	__u32 set = gen & 1;
	struct sample_key key = {
		.pid = pid,
		.tid = tid,
		.user_stack = ustack,
		.user_flags = uflags,
		.kind = kind,
		.kern_stack = kstack,
	};
	__builtin_memcpy(key.comm, comm, TASK_COMM_LEN);
	if (woken) {
		key.waker_pid = t->wk_pid;
		key.waker_flags = t->wk_flags;
		key.waker_user_stack = t->wk_ustack;
		key.waker_kern_stack = t->wk_kstack;
		if (t->wk_gen != gen) { /* stored before a flip: drained since */
			stat_inc(STAT_OFFCPU_STALE);
			if (key.waker_user_stack >= 0)
				key.waker_user_stack = -ESTALE;
			if (key.waker_kern_stack >= 0)
				key.waker_kern_stack = -ESTALE;
		}
		__builtin_memcpy(key.waker_comm, t->wk_comm, TASK_COMM_LEN);
	}
	note_process(pid);
	add(set, &key, 1, weight, true);
}

/* finish_pending attributes a kept block that is still waiting for its user
 * stack, now that its thread (current) is in its own context again. */
static __always_inline void finish_pending(void *ctx, enum scratch_slot slot, bool raw, bool tables,
					   struct offcpu_task *t, struct task_struct *task)
{
	__u32 gen = live_gen();
	__u32 set = gen & 1;
	__u64 id = bpf_get_current_pid_tgid();
	char comm[TASK_COMM_LEN];
	__s64 ustack = -ENOENT;
	__u32 uflags = 0;

	bpf_get_current_comm(comm, sizeof(comm));
	if (!is_kthread(task))
		ustack = ustack_key(ctx, slot, raw, tables, set, &uflags);
	emit_block(gen, id >> 32, (__u32)id, comm, ustack, uflags, kstack_key(set, t), t->pkind, t->weight, t,
		   t->pwoken);
}

/* resume_pending attributes current's pending kept block, if it has one. */
static __always_inline bool resume_pending(void *ctx, enum scratch_slot slot, bool raw, bool tables,
					   struct task_struct *task, __u32 tid)
{
	struct offcpu_hot *h = hot_record(raw, task, tid, false);
	if (!h || !(h->flags & HOT_PENDING))
		return false;
	h->flags &= ~HOT_PENDING;
	struct offcpu_task *t = thread_record(raw, task, tid, false);
	if (t)
		finish_pending(ctx, slot, raw, tables, t, task);
	return true;
}

/* Linux 6.10; every kernel with bpf_task_work has them. */
extern void bpf_preempt_disable(void) __ksym;
extern void bpf_preempt_enable(void) __ksym;

/* offcpu_resumed runs as task_work in the thread whose kept block waits for
 * its user stack, just before it returns to user mode: its user registers
 * are those it blocked with. The kernel runs it with migration disabled but
 * preemptible; it disables preemption for its few microseconds, since the
 * per-CPU scratch it walks the stack in would otherwise be shared with
 * another thread's callback on the same CPU, and the thread's own switch-out
 * would rewrite the hot record it is clearing. One callback per unwinding
 * variant. */
static __always_inline int resumed_common(bool tables)
{
	struct task_struct *task = bpf_get_current_task_btf();

	bpf_preempt_disable();
	resume_pending(0, SCRATCH_SWITCH, false, tables, task, (__u32)bpf_get_current_pid_tgid());
	bpf_preempt_enable();
	return 0;
}

static int offcpu_resumed(struct bpf_map *map, void *key, void *value)
{
	return resumed_common(true);
}

static int offcpu_resumed_fp(struct bpf_map *map, void *key, void *value)
{
	return resumed_common(false);
}

/* resume_later queues the callback for task's return to user mode. Work
 * already queued for it (-EBUSY: it blocked again on its way out) will do. */
static __always_inline void resume_later(struct task_struct *task, enum offcpu_hook hook, bool tables)
{
	__u32 tid = task->pid;
	struct resume_work *w = bpf_map_lookup_elem(&offcpu_resume, &tid);

	if (!w) {
		struct resume_work empty = {};
		bpf_map_update_elem(&offcpu_resume, &tid, &empty, BPF_NOEXIST);
		w = bpf_map_lookup_elem(&offcpu_resume, &tid);
	}
	if (!w) {
		stat_inc(STAT_OFFCPU_RESUME_FAILED);
		return;
	}
	bpf_task_work_callback_t cb = tables ? offcpu_resumed : offcpu_resumed_fp;
	long err = hook == HOOK_TW ? bpf_task_work_schedule_resume(task, &w->tw, &offcpu_resume, cb)
				   : bpf_task_work_schedule_resume_impl(task, &w->tw, &offcpu_resume, cb, NULL);
	if (err && err != -EBUSY)
		stat_inc(STAT_OFFCPU_RESUME_FAILED);
}

/*
 * The sched_switch program, in three steps: block_start (prev leaves the
 * CPU), block_end (next comes back: is its block kept, and with what
 * weight?) and block_attribute (a kept block gets its stacks and is counted,
 * now or when its thread is back in user space).
 */

/* take_at_switch_out takes, while prev is current, what cannot be taken
 * later: under raw_tp the kernel stack of every block (bpf_get_task_stack
 * needs a BTF pointer), and without task_work the user stack of a preempted
 * thread (preempted in user mode it will not pass sys_exit; preempted on its
 * way out of a system call, after a write woke a waiter, it has passed it
 * already). Without a record to keep them in, the block is still measured;
 * its stacks are then taken as for any other block. */
static __always_inline void take_at_switch_out(void *ctx, enum offcpu_hook hook, bool tables,
					       struct task_struct *prev, __u32 tid, struct offcpu_hot *h)
{
	bool raw = hook == HOOK_RAW;
	bool ustack = !HOOK_IS_TW(hook) && h->kind == KIND_OFFCPU_RUNQ && !is_kthread(prev);

	if (!raw && !ustack)
		return;
	struct offcpu_task *t = thread_record(raw, prev, tid, true);
	if (!t) {
		stat_inc(STAT_OFFCPU_STORAGE_FULL);
		return;
	}
	if (raw) {
		__builtin_memset(t->kips, 0, sizeof(t->kips));
		/* Skip this program and bpf_trace_run4(): the stack starts at
		 * __schedule(). */
		long n = bpf_get_stack(ctx, t->kips, sizeof(t->kips), 2 & BPF_F_SKIP_FIELD_MASK);
		t->nr_kips = n > 0 ? n / sizeof(__u64) : 0;
	}
	if (ustack) {
		__u32 uflags;
		t->gen = live_gen();
		t->ustack = ustack_key(ctx, SCRATCH_SWITCH, raw, tables, t->gen & 1, &uflags);
		t->uflags = uflags;
		h->flags |= HOT_USTACK;
	}
}

/* block_start: prev leaves the CPU, a block starts (current == prev). A
 * block of prev still waiting for its user stack is attributed first. */
static __always_inline void block_start(void *ctx, enum offcpu_hook hook, bool tables, bool preempt,
					struct task_struct *prev, unsigned int prev_state, __u64 now)
{
	bool raw = hook == HOOK_RAW;
	__u32 tgid = TASK_READ(raw, prev, tgid), tid = TASK_READ(raw, prev, pid);

	if (!wanted(tgid, tid))
		return;
	struct offcpu_hot *h = hot_record(raw, prev, tid, true);
	if (!h) {
		stat_inc(STAT_OFFCPU_STORAGE_FULL);
		return;
	}
	if (!h->rng) /* new: seed its generator */
		h->rng = bpf_get_prandom_u32() | 1;
	if (h->flags & HOT_PENDING)
		resume_pending(ctx, SCRATCH_SWITCH, raw, tables, prev, tid);
	h->start_ns = 0;
	h->flags = 0;
	__u32 kind = block_kind(preempt, prev_state);
	if (!(offcpu_kinds & (1 << kind)) || (prev_state & TASK_DEAD))
		return;
	h->kind = kind;
	/* Read its mappings while it blocks: a process that exits right
	 * after its block is gone by then. */
	note_process(tgid);
	take_at_switch_out(ctx, hook, tables, prev, tid, h);
	h->start_ns = now;
}

/* block_end: the block of next, d ns long, ends. It returns the block's
 * weight if duration-weighted sampling keeps it, else 0; *woken says the
 * decision was taken at its wakeup (--wakers, offcpu_waking), from the
 * block's length then. */
static __always_inline __u64 block_end(bool raw, struct task_struct *next, __u32 tid, struct offcpu_hot *h,
				       __s64 d, bool *woken)
{
	__u64 T = offcpu_threshold_ns;
	bool keep = h->flags & HOT_KEEP;

	*woken = h->flags & HOT_WOKEN;
	h->flags &= ~(HOT_WOKEN | HOT_KEEP);
	stat_inc(STAT_OFFCPU_BLOCKS);
	if (d < offcpu_min_ns || (*woken && !keep))
		return 0;
	if (*woken) {
		struct offcpu_task *t = thread_record(raw, next, tid, false);
		if (!t || !t->wk_dw) {
			stat_inc(STAT_OFFCPU_STORAGE_FULL);
			return 0;
		}
		/* Kept with probability dw/T (dw < T): weighted d*T/dw, so that
		 * the estimate stays unbiased for the whole block. */
		return t->wk_dw < T ? (__u64)d * T / t->wk_dw : d;
	}
	if (d < T) {
		/* Keep with probability d/T, weighted T: r/2^32 < d/T, without a
		 * division (T < 2^32, checked by user space, so r*T fits). */
		if (draw(h) * T >= (__u64)d << 32)
			return 0;
		return T;
	}
	return d;
}

/* block_attribute counts next's kept block of the given weight: its kernel
 * stack is taken now, before next runs; its user stack is known already (a
 * preempted thread's, taken at switch-out; a kernel thread has none) or is
 * taken when next is back in its own context (resume_later, or sys_exit
 * through offcpu_cpu_pending). */
static __always_inline void block_attribute(void *ctx, enum offcpu_hook hook, bool tables, struct task_struct *next,
					    __u32 tid, struct offcpu_hot *h, __u64 weight, bool woken)
{
	bool raw = hook == HOOK_RAW;
	struct offcpu_task *t = thread_record(raw, next, tid, true);

	stat_inc(STAT_OFFCPU_KEPT);
	if (!t) {
		stat_inc(STAT_OFFCPU_STORAGE_FULL);
		return;
	}
	t->pwoken = woken;
	if (!raw) {
		__builtin_memset(t->kips, 0, sizeof(t->kips));
		long n = bpf_get_task_stack(next, t->kips, sizeof(t->kips), 0);
		if (n < 0) {
			stat_inc(STAT_OFFCPU_KSTACK_EFAULT);
			n = 0;
		}
		t->nr_kips = n / sizeof(__u64);
	} else if (t->nr_kips == 0) {
		stat_inc(STAT_OFFCPU_KSTACK_EFAULT);
	}
	t->weight = weight;
	t->pkind = h->kind;

	if (!(h->flags & HOT_USTACK) && !is_kthread(next)) {
		h->flags |= HOT_PENDING;
		if (HOOK_IS_TW(hook)) {
			resume_later(next, hook, tables);
		} else {
			__u32 *pending = cpu_pending();
			if (pending)
				*pending = 1;
		}
		return;
	}
	/* The user stack is known (or there is none): count it now. */
	__u32 gen = live_gen();
	__s64 ustack = -ENOENT;
	__u32 uflags = 0;
	if (h->flags & HOT_USTACK) {
		ustack = t->ustack;
		uflags = t->uflags;
		if (ustack >= 0 && t->gen != gen) {
			stat_inc(STAT_OFFCPU_STALE);
			ustack = -ESTALE;
		}
	}
	h->flags &= ~HOT_USTACK;
	char comm[TASK_COMM_LEN];
	BPF_CORE_READ_STR_INTO(&comm, next, comm);
	emit_block(gen, TASK_READ(raw, next, tgid), tid, comm, ustack, uflags, kstack_key(gen & 1, t), h->kind,
		   weight, t, woken);
}

/* switch_common is the sched_switch program of every method. */
static __always_inline int switch_common(void *ctx, enum offcpu_hook hook, bool tables, bool preempt,
					 struct task_struct *prev, struct task_struct *next,
					 unsigned int prev_state)
{
	bool raw = hook == HOOK_RAW, woken;
	__u64 now = switch_clock(raw, next);

	if (!now) {
		stat_inc(STAT_OFFCPU_NO_CLOCK);
		return 0;
	}
	block_start(ctx, hook, tables, preempt, prev, prev_state, now);

	if (!HOOK_IS_TW(hook)) {
		/* next's pending block, if any, is set below. */
		__u32 *pending = cpu_pending();
		if (pending && *pending)
			*pending = 0;
	}
	__u32 tid = TASK_READ(raw, next, pid);
	if (tid == 0)
		return 0;
	struct offcpu_hot *h = hot_record(raw, next, tid, false);
	if (!h || h->start_ns == 0)
		return 0;
	__s64 d = now - h->start_ns;
	h->start_ns = 0;
	if (d < 0) /* clocks of two CPUs a hair apart */
		d = 0;
	__u64 weight = block_end(raw, next, tid, h, d, &woken);
	if (weight)
		block_attribute(ctx, hook, tables, next, tid, h, weight, woken);
	return 0;
}

/* The sched_switch programs: one per hook and unwinding variant. */
#define OFFCPU_SWITCH_BTF(name, hook, tables)                                                          \
	SEC("tp_btf/sched_switch")                                                                     \
	int BPF_PROG(name, bool preempt, struct task_struct *prev, struct task_struct *next,           \
		     unsigned int prev_state)                                                          \
	{                                                                                              \
		return switch_common(ctx, hook, tables, preempt, prev, next, prev_state);              \
	}
OFFCPU_SWITCH_BTF(offcpu_switch_tw, HOOK_TW, true)
OFFCPU_SWITCH_BTF(offcpu_switch_tw_fp, HOOK_TW, false)
OFFCPU_SWITCH_BTF(offcpu_switch_tw_impl, HOOK_TW_IMPL, true)
OFFCPU_SWITCH_BTF(offcpu_switch_tw_impl_fp, HOOK_TW_IMPL, false)
OFFCPU_SWITCH_BTF(offcpu_switch, HOOK_SYS_EXIT, true)
OFFCPU_SWITCH_BTF(offcpu_switch_fp, HOOK_SYS_EXIT, false)

/* The raw tracepoint has the same arguments, but prev_state only since
 * Linux 5.18, and a program reading past a tracepoint's arguments is refused
 * at attach: the state is read from the task, as before 5.18 the tracepoint
 * itself did. */
static __always_inline int switch_raw(struct bpf_raw_tracepoint_args *ctx, bool tables)
{
	struct task_struct *prev = (void *)ctx->args[1];
	unsigned int state;

	if (bpf_core_field_exists(prev->__state)) {
		state = BPF_CORE_READ(prev, __state);
	} else {
		struct task_struct___old *old = (void *)prev;
		state = BPF_CORE_READ(old, state);
	}
	return switch_common(ctx, HOOK_RAW, tables, ctx->args[0], prev, (void *)ctx->args[2], state);
}

SEC("raw_tp/sched_switch")
int offcpu_switch_raw(struct bpf_raw_tracepoint_args *ctx)
{
	return switch_raw(ctx, true);
}

SEC("raw_tp/sched_switch")
int offcpu_switch_raw_fp(struct bpf_raw_tracepoint_args *ctx)
{
	return switch_raw(ctx, false);
}

/* sys_exit: current's pending block gets its user stack. */
static __always_inline void sys_exit_common(void *ctx, bool raw, bool tables)
{
	__u32 *pending = cpu_pending();
	if (!pending || !*pending)
		return;
	*pending = 0;
	/* Under raw_tp the task is only a key (offcpu_threads): a plain
	 * pointer will do, and bpf_get_current_task_btf needs Linux 5.11. */
	struct task_struct *task = raw ? (struct task_struct *)bpf_get_current_task() : bpf_get_current_task_btf();
	resume_pending(ctx, SCRATCH_SYS_EXIT, raw, tables, task, (__u32)bpf_get_current_pid_tgid());
}

SEC("tp_btf/sys_exit")
int BPF_PROG(offcpu_sys_exit, struct pt_regs *regs, long ret)
{
	sys_exit_common(ctx, false, true);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(offcpu_sys_exit_fp, struct pt_regs *regs, long ret)
{
	sys_exit_common(ctx, false, false);
	return 0;
}

SEC("raw_tp/sys_exit")
int offcpu_sys_exit_raw(struct bpf_raw_tracepoint_args *ctx)
{
	sys_exit_common(ctx, true, true);
	return 0;
}

SEC("raw_tp/sys_exit")
int offcpu_sys_exit_raw_fp(struct bpf_raw_tracepoint_args *ctx)
{
	sys_exit_common(ctx, true, false);
	return 0;
}
