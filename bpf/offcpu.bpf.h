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
 * (docs/design.md). Stacks are taken only for kept blocks, when the thread runs
 * again, except what only switch-out can take (take_at_switch_out), which a
 * preempted thread's block has taken with probability 2^-k (capture
 * sampling, below): such a block, if captured, is kept with probability
 * min(1, d/(T>>k)) and weighted max(d, T>>k)<<k, still unbiased, and as
 * likely as before to be kept while d <= T>>k. Otherwise:
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
 *
 * The per-thread records are in thread.bpf.h, the taking of a kept block's
 * stacks and its counting (now, at sys_exit, or in a task_work callback) in
 * pending.bpf.h; this file has the clock, the sampling draw and the programs.
 */

#define TASK_RUNNING 0x0000
#define TASK_INTERRUPTIBLE 0x0001
#define TASK_UNINTERRUPTIBLE 0x0002
#define TASK_DEAD 0x80

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
	unsigned int nr_running;
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

/*
 * Capture sampling. A preempted thread's user stack (without task_work) and
 * its kernel stack (under raw_tp) can only be taken at switch-out, a walk at
 * every preemption, though few of those blocks are kept: in a pipe
 * ping-pong, where every write preempts the writer, they were most of the
 * switch program's time. They are taken with probability 2^-k instead, k
 * from the thread's last wait for a CPU: T>>k is at least four times that
 * wait, so a thread whose waits are short (and so rarely kept) pays for a
 * walk once in up to 2^CAPTURE_MAX_SHIFT preemptions. Where another thread
 * waits for the CPU too, the wait may be long whatever the last one was: k
 * is 0 then. Blocks in a sleep are not sampled: a long sleep after short
 * ones is common, and counted 2^k times or not at all it would make the
 * profile noisy where users look.
 */
#define CAPTURE_MAX_SHIFT 6

/* runq_shift returns the largest k <= CAPTURE_MAX_SHIFT with T>>k >= 4d: the
 * capture shift of a thread's next preemption after a wait of d ns. */
static __always_inline __u32 runq_shift(__u64 d)
{
	__u64 T = offcpu_threshold_ns;
	__u32 k;

	for (k = CAPTURE_MAX_SHIFT; k > 0; k--)
		if ((T >> k) >= d << 2)
			break;
	return k;
}

/* crowded reports whether a thread other than prev and next is runnable on
 * prev's CPU (or that cannot be read): prev's wait may then be long. */
static __always_inline bool crowded(bool raw, struct task_struct *prev)
{
	if (!bpf_core_field_exists(((struct cfs_rq___ember *)0)->rq))
		return true;
	struct task_struct___sched *t = (void *)prev;
	unsigned int n = raw ? BPF_CORE_READ(t, se.cfs_rq, rq, nr_running) : t->se.cfs_rq->rq->nr_running;
	return n > 2;
}

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
 * its stacks are then taken as for any other block.
 *
 * It returns how much later than the switch the block is to start. A walk
 * here delays next, so prev's block is longer by it; only the captured
 * blocks pay it, and they stand for 2^k blocks each: counted whole, the walk
 * would be counted 2^k times. A captured block therefore starts after all
 * but 2^-k of its walk, which keeps the estimate of blocked time, walks
 * included, unbiased. */
static __always_inline __u64 take_at_switch_out(void *ctx, enum offcpu_hook hook, bool tables,
						struct task_struct *prev, __u32 tid, struct offcpu_hot *h)
{
	bool raw = hook == HOOK_RAW;
	bool ustack = !HOOK_IS_TW(hook) && h->kind == KIND_OFFCPU_RUNQ && !is_kthread(prev);

	if (!raw && !ustack)
		return 0;
	__u32 k = h->kind == KIND_OFFCPU_RUNQ && !crowded(raw, prev) ? h->runq_shift : 0;
	if (k && (draw(h) & ((1u << k) - 1))) {
		h->capture = UNCAPTURED;
		return 0;
	}
	h->capture = k;
	__u64 t0 = k ? bpf_ktime_get_ns() : 0;
	struct offcpu_task *t = thread_record(raw, prev, tid, true);
	if (!t) {
		stat_inc(STAT_OFFCPU_STORAGE_FULL);
		return 0;
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
	if (!k)
		return 0;
	__u64 walk = bpf_ktime_get_ns() - t0;
	return walk - (walk >> k);
}

static __always_inline void unseen_end(bool raw, struct task_struct *task, __u32 tid, struct offcpu_hot *h,
					__u64 now);

/* block_start: prev leaves the CPU, a block starts (current == prev). A
 * block of prev still waiting for its user stack is attributed first, and
 * one whose end was not reported is ended (unseen_end). */
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
	if (h->start_ns)
		unseen_end(raw, prev, tid, h, now);
	h->start_ns = 0;
	h->flags &= HOT_NOTED;
	h->capture = 0;
	if (prev_state & TASK_DEAD) {
		/* Its last switch: its thread ID may be reused. */
		h->flags = 0;
		h->runq_shift = 0;
		return;
	}
	__u32 kind = block_kind(preempt, prev_state);
	if (!(offcpu_kinds & (1 << kind)))
		return;
	h->kind = kind;
	/* Read its mappings while it blocks: a process that exits right
	 * after its block is gone by then. Once per thread: the lookup
	 * would be most of a switch's cost. Not once it is exiting (and not
	 * marked noted then, so that its thread ID comes clean). */
	if (!(h->flags & HOT_NOTED) && !(TASK_READ(raw, prev, flags) & PF_EXITING)) {
		note_process(tgid, false);
		h->flags |= HOT_NOTED;
	}
	h->start_ns = now + take_at_switch_out(ctx, hook, tables, prev, tid, h);
}

/* block_end: the block of next, d ns long, ends. It returns the block's
 * weight if duration-weighted sampling keeps it, else 0; *woken says the
 * decision was taken at its wakeup (--wakers, offcpu_waking), from the
 * block's length then. */
static __always_inline __u64 block_end(bool raw, struct task_struct *next, __u32 tid, struct offcpu_hot *h,
				       __s64 d, bool *woken)
{
	bool keep = h->flags & HOT_KEEP, uncaptured = h->capture == UNCAPTURED;
	__u32 k = uncaptured ? 0 : h->capture & 7;
	__u64 T = offcpu_threshold_ns >> k;

	*woken = h->flags & HOT_WOKEN;
	h->flags &= ~(HOT_WOKEN | HOT_KEEP);
	h->capture = 0;
	if (h->kind == KIND_OFFCPU_RUNQ)
		h->runq_shift = runq_shift(d);
	stat_inc(STAT_OFFCPU_BLOCKS);
	if (uncaptured) {
		stat_inc(STAT_OFFCPU_UNCAPTURED);
		return 0;
	}
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
		return (t->wk_dw < T ? (__u64)d * T / t->wk_dw : d) << k;
	}
	if (d < T) {
		/* Keep with probability d/T, weighted T: r/2^32 < d/T, without a
		 * division (T < 2^32, checked by user space, so r*T fits). */
		if (draw(h) * T >= (__u64)d << 32)
			return 0;
		return T << k;
	}
	return d << k;
}

/* When the scheduler last put a task on a CPU (sched_info_arrive(),
 * CONFIG_SCHED_INFO), in its runqueue's clock. */
struct sched_info___ember {
	unsigned long long last_arrival;
} __attribute__((preserve_access_index));
struct task_struct___info {
	struct sched_info___ember sched_info;
} __attribute__((preserve_access_index));

/*
 * unseen_end ends a block of task (current) whose end no sched_switch
 * reported: task was switched in, and is running, with h->start_ns still
 * set. A kernel build can leave the tracepoint out for some switches: one
 * VM build here never reports a switch away from its guest agent's
 * threads (ftrace's sched_switch event misses them too), so the task
 * switched in then is never seen to end its block. Without this the block
 * was dropped without a count at the task's next switch-out or its exit,
 * the two places that call this.
 *
 * Its length comes from the scheduler's own record of the task's last
 * switch-in (sched_info.last_arrival, runqueue clock): the time the task
 * has been on the CPU since then is taken off the time since the block
 * began. At exit the runqueue clock can be a tick behind, which makes the
 * block that much longer. Its stacks are gone: it is counted with
 * ENODATA for both (a marker frame each), and in offcpu_switch_in_unseen.
 */
static __always_inline void unseen_end(bool raw, struct task_struct *task, __u32 tid, struct offcpu_hot *h,
				       __u64 now)
{
	__s64 d = now - h->start_ns;

	h->start_ns = 0;
	stat_inc(STAT_OFFCPU_SWITCH_IN_UNSEEN);
	if (!bpf_core_field_exists(((struct task_struct___info *)0)->sched_info.last_arrival) ||
	    !bpf_core_field_exists(((struct cfs_rq___ember *)0)->rq))
		return;
	struct task_struct___info *ti = (void *)task;
	struct task_struct___sched *ts = (void *)task;
	__u64 arrival = raw ? BPF_CORE_READ(ti, sched_info.last_arrival) : ti->sched_info.last_arrival;
	__u64 clock = raw ? BPF_CORE_READ(ts, se.cfs_rq, rq, clock) : ts->se.cfs_rq->rq->clock;
	/* An arrival before the block began is not its end: length unknown. */
	if (d <= 0 || !arrival || clock < arrival || clock - arrival >= d)
		return;
	d -= clock - arrival;
	bool woken;
	__u64 weight = block_end(raw, task, tid, h, d, &woken);
	if (!weight)
		return;
	stat_inc(STAT_OFFCPU_KEPT);
	char comm[TASK_COMM_LEN];
	BPF_CORE_READ_STR_INTO(&comm, task, comm);
	emit_block(live_gen(), TASK_READ(raw, task, tgid), tid, comm, -ENODATA, 0, -ENODATA, h->kind, weight, 0,
		   false, TASK_READ(raw, task, flags) & PF_EXITING);
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
		   weight, t, woken, TASK_READ(raw, next, flags) & PF_EXITING);
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
