/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Copies of user stacks, for the samples of processes whose unwind tables
 * are not in the kernel yet (issue #15), included by ember.bpf.c.
 *
 * User space builds a process's tables after it first sees the process, a
 * few milliseconds after its first sample: a frame-pointer walk of those
 * first samples loses the callers of code built without frame pointers (all
 * of a 50 ms program's samples, some of every new process's). Instead, the
 * table variants copy the sampled thread's user registers and the top of its
 * user stack into a ring buffer, and user space walks the copy with the same
 * tables (unwind.Unwind, the Go twin of unwind_user) once they exist. The
 * sample's key names the copy (USER_STACK_COPIED, user_stack = the copy's
 * id); the drain takes the walked stack from user space. As perf --call-graph
 * dwarf does, the copy is bounded: a stack deeper than STACK_COPY_BYTES is
 * walked as far as the copy goes, and the walk says it stopped
 * (REASON_READ_FAILED). Where the ring buffer is full the sample is walked
 * with frame pointers, as before (counted and marked by user space).
 */

/* sample_key.user_flags (and waker_flags): the user stack is a copy in the
 * stack_copies ring buffer, user_stack its id (bpf.UserStackCopied). */
#define USER_STACK_COPIED (1 << 10)

/* The bytes of user stack copied from SP up: enough for the frames of a
 * program's main thread from its leaf up to _start (its arguments and
 * environment lie above, and are left out), and for most threads'. */
#define STACK_COPY_BYTES 8192

/* One copy (internal/tracer/stackcopy.go reads it: keep the two equal). */
struct stack_copy {
	__u64 id;          /* sample_key.user_stack of the sample(s) it serves */
	__u32 pid, tid;
	__u64 pc, sp, fp, lr; /* the user registers (unwind.Regs) */
	__u32 len;         /* bytes of stack copied from sp; 0: unreadable */
	__u32 pad;
	__u8 stack[STACK_COPY_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21);
} stack_copies SEC(".maps");

/* The fields read here, as CO-RE flavours of the kernel's types (matched
 * by name without the ___ suffix), so vmlinux.h stays as it is. */
struct mm_struct___copy {
	unsigned long start_stack;
} __attribute__((preserve_access_index));

struct task_struct___copy {
	struct mm_struct___copy *mm;
} __attribute__((preserve_access_index));

/* The last copy id per CPU: ids are (cpu << 40) | count, so no two CPUs
 * hand out the same one. The count is taken with an atomic add all the same:
 * where sys_exit's program is preemptible (faultable system call
 * tracepoints) two programs on one CPU can be between the read and the
 * write at once, and a plain increment would give both one id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} stack_copy_seq SEC(".maps");

/* copy_user_stack copies current's user registers and stack into the ring
 * buffer and returns the copy's id, or a negative errno (then the caller
 * walks with frame pointers). It is a global function, verified once for
 * its call sites (on-CPU, switch-out, sys_exit). */
__attribute__((noinline)) __s64 copy_user_stack(__u32 tgid)
{
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&stack_copy_seq, &zero);
	if (!seq)
		return -ENOMEM;
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (!regs)
		return -EFAULT;
	struct stack_copy *c = bpf_ringbuf_reserve(&stack_copies, sizeof(*c), 0);
	if (!c)
		return -ENOSPC;
	__u64 n = __sync_fetch_and_add(seq, 1) + 1;
	c->id = ((__u64)bpf_get_smp_processor_id() << 40) | (n & ((1ULL << 40) - 1));
	c->pid = tgid;
	c->tid = (__u32)bpf_get_current_pid_tgid();
#if defined(__TARGET_ARCH_x86)
	c->pc = regs->ip;
	c->sp = regs->sp;
	c->fp = regs->bp;
	c->lr = regs->di;
#elif defined(__TARGET_ARCH_arm64)
	c->pc = regs->pc;
	c->sp = regs->sp;
	c->fp = regs->regs[29];
	c->lr = regs->regs[30];
#endif
	c->pad = 0;
	/* On the main thread's stack, copy up to where the kernel put argc
	 * (mm->start_stack): reading past the stack's top would fault the whole
	 * read. Elsewhere copy all, or a quarter where that faults. */
	__u64 top = BPF_CORE_READ((struct task_struct___copy *)task, mm, start_stack);
	__u64 len = STACK_COPY_BYTES;
	if (c->sp < top && top - c->sp < STACK_COPY_BYTES)
		len = ((top - c->sp) + 8) & ~7ULL;
	if (len > STACK_COPY_BYTES)
		len = STACK_COPY_BYTES;
	if (bpf_probe_read_user(c->stack, len, (void *)c->sp)) {
		len = STACK_COPY_BYTES / 4;
		if (bpf_probe_read_user(c->stack, len, (void *)c->sp))
			len = 0;
	}
	c->len = len;
	__s64 id = c->id;
	bpf_ringbuf_submit(c, 0);
	return id;
}
