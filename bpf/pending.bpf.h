/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A kept block's stacks and its counting, included by ember.bpf.c after
 * thread.bpf.h and before offcpu.bpf.h. The kernel stack is taken at the
 * switch (offcpu.bpf.h); the user stack where the thread is back in its own
 * context: at once when it is known already, else at sys_exit (finish_pending
 * through resume_pending) or in a task_work callback queued at switch-in
 * (resume_later), and at the thread's next switch-out at the latest.
 */

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

/* ustack_key stores current's user stack in the set's hashed_ustacks map
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
	void *map = set ? (void *)&hashed_ustacks1 : (void *)&hashed_ustacks0;
	return STACK_STORE(map, buf->ips, MAX_USTACK_DEPTH, STAT_OFFCPU_USTACK_FULL, STAT_USTACK_HASH_COLLISION);
}

/* emit_block counts a kept block in generation gen's set; with woken, t
 * holds its waker. exiting says the thread has PF_EXITING (note_process). */
static __always_inline void emit_block(__u32 gen, __u32 pid, __u32 tid, char *comm,
				       __s64 ustack, __u32 uflags, __s64 kstack, __u32 kind, __u64 weight,
				       struct offcpu_task *t, bool woken, bool exiting)
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
	note_process(pid, exiting);
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
		   t->pwoken, TASK_READ(raw, task, flags) & PF_EXITING);
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
