/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Off-CPU accounting, included by ember.bpf.c.
 *
 * A block starts when sched_switch takes a thread off the CPU and ends when
 * sched_switch puts it back. Start times live in task-local storage: one
 * global, per-thread slot, so a thread that migrates between CPUs is measured
 * from one clock read to the next and nothing can inflate it.
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

struct offcpu_task {
	__u64 start_ns;  /* 0: not blocked (or not measured) */
	__s64 ustack;    /* user stack taken at switch-out, or -ENOENT */
	__u32 kind;      /* enum sample_kind of the block in progress */
	__u32 set;       /* live set when ustack was taken */
	__u32 pending;   /* a kept block waits for its user stack */
	__u32 uflags;    /* sample_key.user_flags of ustack */
	__u64 weight;    /* its weighted duration */
	__u32 pkind;     /* its kind */
	__u32 nr_kips;   /* its kernel stack depth */
	__u64 rng;       /* xorshift64 state of the thread's sampling draws */
	__u64 kips[MAX_KSTACK_DEPTH];
};

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
static __always_inline __u64 switch_clock(struct task_struct *next)
{
	if (rq_clock && bpf_core_field_exists(((struct cfs_rq___ember *)0)->rq)) {
		struct task_struct___sched *t = (void *)next;
		return t->se.cfs_rq->rq->clock;
	}
	return bpf_ktime_get_ns();
}

/* draw returns a uniform 32-bit variate from the thread's own xorshift64
 * generator: a few instructions, where bpf_get_prandom_u32() is a call. */
static __always_inline __u64 draw(struct offcpu_task *t)
{
	__u64 x = t->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	t->rng = x;
	return x >> 32;
}

/*
 * cpu_pending[cpu] is set while the task running on cpu has a kept block
 * waiting for its user stack. At most one can: the task switched in last,
 * which runs until the next sched_switch on that CPU. sys_exit runs on every
 * system call of every task; the flag lets it return without a
 * task-storage lookup in the common case.
 */
#define MAX_CPUS 4096
__u8 cpu_pending[MAX_CPUS];

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct offcpu_task);
} offcpu_tasks SEC(".maps");

/* Set by user space when the kernel has bpf_task_work: user stacks of kept
 * blocks are then taken by offcpu_resumed, and sys_exit is not attached. */
const volatile bool resume_by_task_work = false;

#ifndef bpf_ksym_exists /* Debian 12's libbpf headers predate it */
#define bpf_ksym_exists(sym) (!!(sym))
#endif

extern int bpf_task_work_schedule_resume_impl(struct task_struct *task, struct bpf_task_work *tw,
					      void *map__map, bpf_task_work_callback_t callback,
					      void *aux__prog) __ksym __weak;

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

/* in_syscall reports whether task (current) entered the kernel through a
 * system call, so that it will leave through sys_exit with its user
 * registers as they are now (arch/x86/entry: orig_ax holds the call number,
 * -1 for interrupts; arm64: syscallno, NO_SYSCALL = -1). */
static __always_inline bool in_syscall(struct task_struct *task)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return false;
#if defined(__TARGET_ARCH_x86)
	return (long)BPF_CORE_READ(regs, orig_ax) >= 0;
#elif defined(__TARGET_ARCH_arm64)
	return BPF_CORE_READ(regs, syscallno) >= 0;
#else
	return false;
#endif
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


/* kstack_key stores the kernel stack in t->kips (zero-padded) in the live
 * set's map under a hash of its frames and returns the hash (top bit
 * clear), or a negative errno. */
static __always_inline __s64 kstack_key(__u32 set, struct offcpu_task *t)
{
	if (t->nr_kips == 0)
		return -14; /* EFAULT */
	__u64 h = HASH_FRAMES(t->kips, MAX_KSTACK_DEPTH);
	void *map = set ? (void *)&offcpu_kstacks1 : (void *)&offcpu_kstacks0;
	if (bpf_map_lookup_elem(map, &h))
		return h;
	long err = bpf_map_update_elem(map, &h, t->kips, BPF_NOEXIST);
	if (err && err != -17 /* EEXIST: raced with another CPU */) {
		stat_inc(STAT_OFFCPU_KSTACK_FULL);
		return err;
	}
	return h;
}

/* ustack_key stores current's user stack in the set's offcpu_ustacks map
 * under a hash of its frames and returns the hash, or a negative errno. It
 * walks with unwind tables when the process has them (*uflags says so),
 * else with frame pointers. */
static __always_inline __s64 ustack_key(__u32 set, __u32 *uflags)
{
	__u32 zero = 0;

	*uflags = 0;
	if (unwind_with_tables) {
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		struct unwind_proc *proc = bpf_map_lookup_elem(&unwind_procs, &tgid);
		if (proc) {
			__u32 reason;
			__s64 k = unwind_user(UNWIND_SCRATCH_OFFCPU, set, tgid, proc, &reason);
			*uflags = USER_STACK_HASHED | (reason & USER_STACK_REASON_MASK);
			return k;
		}
	}
	struct ustack *buf = bpf_map_lookup_elem(&ustack_scratch, &zero);

	if (!buf)
		return -12;
	/* The scratch holds an older stack: clear it, so the tail is zero. */
	__builtin_memset(buf, 0, sizeof(*buf));
	/* On current, so that it works in a task_work callback, which has no
	 * context to pass to bpf_get_stack. */
	long n = bpf_get_task_stack(bpf_get_current_task_btf(), buf->ips, sizeof(buf->ips),
				    BPF_F_USER_STACK);
	if (n <= 0) {
		stat_inc(STAT_OFFCPU_USTACK_EFAULT);
		return n < 0 ? n : -14;
	}
	__u64 h = HASH_FRAMES(buf->ips, MAX_USTACK_DEPTH);
	void *map = set ? (void *)&offcpu_ustacks1 : (void *)&offcpu_ustacks0;
	if (bpf_map_lookup_elem(map, &h))
		return h;
	long err = bpf_map_update_elem(map, &h, buf, BPF_NOEXIST);
	if (err && err != -17 /* EEXIST: raced with another CPU */) {
		stat_inc(STAT_OFFCPU_USTACK_FULL);
		return err;
	}
	return h;
}

static __always_inline void emit_block(__u32 set, __u32 pid, __u32 tid, char *comm,
				       __s64 ustack, __u32 uflags, __s64 kstack, __u32 kind, __u64 weight)
{
	struct sample_key key = {
		.pid = pid,
		.tid = tid,
		.user_stack = ustack,
		.user_flags = uflags,
		.kind = kind,
		.kern_stack = kstack,
	};
	__builtin_memcpy(key.comm, comm, TASK_COMM_LEN);
	note_process(pid);
	add(set, &key, 1, weight);
}

/* finish_pending attributes a kept block that is still waiting for its user
 * stack, now that its thread (current) is in its own context again. */
static __always_inline void finish_pending(struct offcpu_task *t, struct task_struct *task)
{
	__u32 set = live_set();
	__u64 id = bpf_get_current_pid_tgid();
	char comm[TASK_COMM_LEN];
	__s64 ustack = -2; /* ENOENT */
	__u32 uflags = 0;

	t->pending = 0;
	bpf_get_current_comm(comm, sizeof(comm));
	if (!is_kthread(task))
		ustack = ustack_key(set, &uflags);
	emit_block(set, id >> 32, (__u32)id, comm, ustack, uflags, kstack_key(set, t), t->pkind, t->weight);
}

/* offcpu_resumed runs as task_work in the thread whose kept block waits for
 * its user stack, just before it returns to user mode: its user registers
 * are those it blocked with. */
static int offcpu_resumed(struct bpf_map *map, void *key, void *value)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct offcpu_task *t = bpf_task_storage_get(&offcpu_tasks, task, 0, 0);

	if (t && t->pending)
		finish_pending(t, task);
	return 0;
}

/* resume_later queues offcpu_resumed for task's return to user mode. Work
 * already queued for it (-EBUSY: it blocked again on its way out) will do. */
static __always_inline void resume_later(struct task_struct *task)
{
	__u32 tid = task->pid;
	struct resume_work *w = bpf_map_lookup_elem(&offcpu_resume, &tid);

	if (!w) {
		struct resume_work empty = {};
		bpf_map_update_elem(&offcpu_resume, &tid, &empty, BPF_NOEXIST);
		w = bpf_map_lookup_elem(&offcpu_resume, &tid);
	}
	if (!w || !bpf_ksym_exists(bpf_task_work_schedule_resume_impl)) {
		stat_inc(STAT_OFFCPU_RESUME_FAILED);
		return;
	}
	long err = bpf_task_work_schedule_resume_impl(task, &w->tw, &offcpu_resume, offcpu_resumed, NULL);
	if (err && err != -16 /* EBUSY */)
		stat_inc(STAT_OFFCPU_RESUME_FAILED);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(offcpu_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u64 now = switch_clock(next);
	struct offcpu_task *t;

	if (!now) {
		stat_inc(STAT_OFFCPU_NO_CLOCK);
		return 0;
	}

	/* prev leaves the CPU: a block starts. current == prev here. */
	__u32 ptgid = prev->tgid, ptid = prev->pid;
	if (wanted(ptgid, ptid)) {
		__u32 kind = block_kind(preempt, prev_state);
		t = bpf_task_storage_get(&offcpu_tasks, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (!t) {
			stat_inc(STAT_OFFCPU_STORAGE_FULL);
		} else {
			if (!t->rng) /* new: seed its generator */
				t->rng = ((__u64)bpf_get_prandom_u32() << 32 | bpf_get_prandom_u32()) | 1;
			if (t->pending)
				finish_pending(t, prev);
			t->start_ns = 0;
			if (offcpu_kinds & (1 << kind)) {
				t->kind = kind;
				t->ustack = -2; /* ENOENT */
				t->uflags = 0;
				/* Without task_work, a thread preempted in user mode
				 * will not pass sys_exit: its user stack is taken now,
				 * while it is current. One preempted inside a system
				 * call (a write that woke a waiter, say) waits for
				 * sys_exit like any other block, which keeps the common
				 * case cheap. */
				if (!resume_by_task_work && kind == KIND_OFFCPU_RUNQ && !is_kthread(prev) &&
				    !in_syscall(prev)) {
					__u32 uflags;
					t->set = live_set();
					t->ustack = ustack_key(t->set, &uflags);
					t->uflags = uflags;
				}
				t->start_ns = now;
			}
		}
	}

	/* next comes back: the block ends. */
	__u32 cpu = bpf_get_smp_processor_id();
	if (!resume_by_task_work && cpu < MAX_CPUS)
		cpu_pending[cpu] = 0;
	if (next->pid == 0)
		return 0;
	t = bpf_task_storage_get(&offcpu_tasks, next, 0, 0);
	if (!t || t->start_ns == 0)
		return 0;
	__s64 d = now - t->start_ns;
	t->start_ns = 0;
	if (d < 0) /* clocks of two CPUs a hair apart */
		d = 0;
	stat_inc(STAT_OFFCPU_BLOCKS);
	if (d < offcpu_min_ns)
		return 0;
	__u64 T = offcpu_threshold_ns, weight = d;
	if (d < T) {
		/* Keep with probability d/T, weighted T: r/2^32 < d/T, without a
		 * division (T < 2^32, checked by user space, so r*T fits). */
		__u64 r = draw(t);
		if (r * T >= (__u64)d << 32)
			return 0;
		weight = T;
	}
	stat_inc(STAT_OFFCPU_KEPT);

	__builtin_memset(t->kips, 0, sizeof(t->kips));
	long n = bpf_get_task_stack(next, t->kips, sizeof(t->kips), 0);
	if (n < 0) {
		stat_inc(STAT_OFFCPU_KSTACK_EFAULT);
		n = 0;
	}
	t->nr_kips = n / sizeof(__u64);
	t->weight = weight;
	t->pkind = t->kind;

	if (t->ustack != -2 /* taken at switch-out */ || is_kthread(next)) {
		/* The user stack is known (or there is none): attribute now. */
		__u32 set = live_set();
		__s64 ustack = t->ustack;
		if (ustack >= 0 && t->set != set) {
			stat_inc(STAT_OFFCPU_STALE);
			ustack = -116; /* ESTALE */
		}
		char comm[TASK_COMM_LEN];
		BPF_CORE_READ_STR_INTO(&comm, next, comm);
		emit_block(set, next->tgid, next->pid, comm, ustack, t->uflags, kstack_key(set, t), t->kind, weight);
		return 0;
	}
	t->pending = 1;
	if (resume_by_task_work) {
		resume_later(next);
		return 0;
	}
	if (cpu < MAX_CPUS)
		cpu_pending[cpu] = 1;
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(offcpu_sys_exit, struct pt_regs *regs, long ret)
{
	__u32 cpu = bpf_get_smp_processor_id();
	if (cpu < MAX_CPUS && !cpu_pending[cpu])
		return 0;

	struct task_struct *task = bpf_get_current_task_btf();
	struct offcpu_task *t = bpf_task_storage_get(&offcpu_tasks, task, 0, 0);
	if (t && t->pending) {
		finish_pending(t, task);
		if (cpu < MAX_CPUS)
			cpu_pending[cpu] = 0;
	}
	return 0;
}
