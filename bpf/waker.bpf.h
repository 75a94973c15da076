/* SPDX-License-Identifier: GPL-2.0 */
/* The wakers of kept blocks (--wakers), included by ember.bpf.c after offcpu.bpf.h. */

/*
 * --wakers: sched_waking fires in the waker's context (current) when a
 * blocked thread p is made runnable (try_to_wake_up). The block's length so
 * far is known, so the duration-weighted decision is taken here, and the
 * waker's stacks and comm are taken only for the blocks kept; sched_switch
 * attributes them with the block when p runs again. A block that ends
 * without a wakeup (preemption, or a wakeup before the block's own switch)
 * is decided at switch-in, as without --wakers, and has no waker. Blocks are
 * timed with bpf_ktime_get_ns() here (the loader sets rq_clock off): the
 * runqueue clock of p's CPU is not current at its wakeup.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kstack);
} kstack_scratch SEC(".maps");

/* current_kstack_key stores current's kernel stack in the set's
 * offcpu_kstacks map and returns its key, or a negative errno. */
static __always_inline __s64 current_kstack_key(void *ctx, bool raw, __u32 set)
{
	__u32 zero = 0;
	struct kstack *buf = bpf_map_lookup_elem(&kstack_scratch, &zero);
	if (!buf)
		return -ENOMEM;
	__builtin_memset(buf, 0, sizeof(*buf));
	long n = raw ? bpf_get_stack(ctx, buf->ips, sizeof(buf->ips), 0)
		     : bpf_get_task_stack(bpf_get_current_task_btf(), buf->ips, sizeof(buf->ips), 0);
	if (n <= 0) {
		stat_inc(STAT_OFFCPU_KSTACK_EFAULT);
		return n < 0 ? n : -EFAULT;
	}
	void *map = set ? (void *)&offcpu_kstacks1 : (void *)&offcpu_kstacks0;
	return STACK_STORE(map, buf->ips, MAX_KSTACK_DEPTH, STAT_OFFCPU_KSTACK_FULL, STAT_KSTACK_HASH_COLLISION);
}

static __always_inline void waking_common(void *ctx, bool raw, bool tables, struct task_struct *p)
{
	__u32 tid = TASK_READ(raw, p, pid);
	if (tid == 0)
		return;
	struct offcpu_hot *h = hot_record(raw, p, tid, false);
	if (!h || !h->start_ns || (h->flags & HOT_WOKEN))
		return;
	__s64 d = bpf_ktime_get_ns() - h->start_ns;
	h->flags |= HOT_WOKEN;
	/* An uncaptured block is not kept: no waker for it. */
	if (d <= 0 || h->capture == UNCAPTURED)
		return;
	/* A captured block's threshold, as block_end has it. */
	__u64 T = offcpu_threshold_ns >> (h->capture & 7);
	if (d < T) {
		__u64 r = draw(h);
		if (r * T >= (__u64)d << 32)
			return;
	}
	struct offcpu_task *t = thread_record(raw, p, tid, true);
	if (!t) {
		stat_inc(STAT_OFFCPU_STORAGE_FULL);
		return;
	}
	__u32 gen = live_gen();
	__u32 set = gen & 1;
	__u64 id = bpf_get_current_pid_tgid();
	struct task_struct *cur = (struct task_struct *)bpf_get_current_task();
	__u32 uflags = 0;

	t->wk_dw = d;
	t->wk_pid = id >> 32;
	t->wk_gen = gen;
	bpf_get_current_comm(t->wk_comm, sizeof(t->wk_comm));
	t->wk_kstack = current_kstack_key(ctx, raw, set);
	t->wk_ustack = -ENOENT; /* a kernel thread, or an interrupt in idle */
	if ((id >> 32) != 0 && !is_kthread(cur))
		t->wk_ustack = ustack_key(ctx, SCRATCH_WAKING, raw, tables, set, &uflags);
	t->wk_flags = WAKER_WOKE | uflags;
	h->flags |= HOT_KEEP;
}

SEC("tp_btf/sched_waking")
int BPF_PROG(offcpu_waking, struct task_struct *p)
{
	waking_common(ctx, false, true, p);
	return 0;
}

SEC("tp_btf/sched_waking")
int BPF_PROG(offcpu_waking_fp, struct task_struct *p)
{
	waking_common(ctx, false, false, p);
	return 0;
}

SEC("raw_tp/sched_waking")
int offcpu_waking_raw(struct bpf_raw_tracepoint_args *ctx)
{
	waking_common(ctx, true, true, (void *)ctx->args[0]);
	return 0;
}

SEC("raw_tp/sched_waking")
int offcpu_waking_raw_fp(struct bpf_raw_tracepoint_args *ctx)
{
	waking_common(ctx, true, false, (void *)ctx->args[0]);
	return 0;
}
