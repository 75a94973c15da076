//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/*
 * Ember's kernel side: on-CPU sampling (perf_event cpu-clock) and off-CPU
 * accounting (sched_switch, with a task_work callback or sys_exit for user
 * stacks; tp_btf, or raw_tp where the kernel lacks it), counted per
 * {pid, tid, user stack, kernel stack, kind} into double-buffered maps.
 *
 * Every program comes in variants that differ in what they need of the
 * kernel, compiled from one body with compile-time constants: NAME walks
 * user stacks with unwind tables (bpf_loop, Linux 5.17), NAME_fp with frame
 * pointers only, and holds nothing an older verifier refuses (no callbacks,
 * no hash maps allocated at run time). User space loads the variants it
 * wants and, for auto choices, falls back to the next when the kernel
 * refuses one (internal/tracer). A variant is chosen by loading, never by
 * reading kernel versions or feature names.
 *
 * Shape follows libbpf-tools' profile.bpf.c and offcputime.bpf.c, with three
 * differences that docs/design.md explains: every stack failure is counted in a
 * per-CPU stats map (never hidden, never BPF_F_REUSE_STACKID), the counts and
 * stack maps exist twice so user space can drain one set while the other is
 * live, and off-CPU stacks are taken only for the blocks that are kept, when
 * the blocked thread runs again.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "ember.h"

char LICENSE[] SEC("license") = "GPL";

/* Load-time configuration, set by user space before loading. */
const volatile __u32 self_tgid = 0;        /* exclude the profiler itself */
const volatile bool filter_pids = false;   /* only tgids in the pids map */
const volatile bool follow_forks = false;  /* add children of filtered tgids */
const volatile __u32 filter_cgroups = 0;   /* only tasks under cgroups[0..n) (0: any) */
const volatile bool include_idle = false;  /* count the idle task (pid 0) */
const volatile __u64 offcpu_threshold_ns = 1000000; /* T of the weighted sampling */
const volatile __u64 offcpu_min_ns = 0;    /* blocks shorter are never kept */
const volatile __u32 offcpu_kinds = 0xff;  /* bit (1 << kind) of kinds to keep */

#define MAX_KSTACK_DEPTH 64

/* bpf_ktime_get_ns() of the first on-CPU sample, for time-to-first-sample. */
__u64 first_sample_ns = 0;

/* The live set: 0 or 1. User space flips it, then drains the idle set. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} active_set SEC(".maps");

struct counts_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); /* resized by user space */
	__type(key, struct sample_key);
	__type(value, struct sample_value);
};
struct counts_map counts0 SEC(".maps");
struct counts_map counts1 SEC(".maps");

struct stacks_map {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384); /* resized by user space */
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
};
struct stacks_map stacks0 SEC(".maps");
struct stacks_map stacks1 SEC(".maps");

/* Kernel stacks of blocked threads, keyed by a hash of their frames. */
struct kstack {
	__u64 ips[MAX_KSTACK_DEPTH];
};
struct offcpu_kstacks_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384); /* resized by user space */
	__type(key, __u64);
	__type(value, struct kstack);
};
struct offcpu_kstacks_map offcpu_kstacks0 SEC(".maps");
struct offcpu_kstacks_map offcpu_kstacks1 SEC(".maps");

/*
 * User stacks keyed by a hash of their frames: every off-CPU block's, and
 * every on-CPU one walked with unwind tables (sample_key.user_flags says
 * USER_STACK_HASHED). Unlike a STACK_TRACE map, a hash map has no bucket
 * collisions (a hash collision is detected, STACK_STORE), and without
 * preallocation it costs memory only for the stacks it holds: off-CPU
 * sampling can keep thousands of distinct stacks a second on a busy machine.
 */
#define MAX_USTACK_DEPTH 127
struct ustack {
	__u64 ips[MAX_USTACK_DEPTH];
};
struct hashed_ustacks_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536); /* resized by user space */
	__type(key, __u64);
	__type(value, struct ustack);
};
struct hashed_ustacks_map hashed_ustacks0 SEC(".maps");
struct hashed_ustacks_map hashed_ustacks1 SEC(".maps");

/*
 * The per-CPU scratch an off-CPU user stack is taken in (ustack_scratch, and
 * unwind_scratch after its on-CPU slot) has one slot per context that can
 * run in the middle of another on the same CPU, so that none rewrites a
 * buffer another is still reading:
 *   SCRATCH_SWITCH:   sched_switch (interrupts off) and the task_work
 *                     callback (preemption off): neither runs inside the
 *                     other;
 *   SCRATCH_SYS_EXIT: sys_exit. An interrupt's wakeup can come in the middle
 *                     of it, and where system call tracepoints may fault
 *                     (BPF then runs with migration disabled but
 *                     preemptible) so can a switch to another thread and
 *                     that thread's switch-out program. Two runs of it never
 *                     share the slot: the kernel does not start a program on
 *                     a CPU where it is already running;
 *   SCRATCH_WAKING:   sched_waking (--wakers), which can come in an interrupt
 *                     in the middle of sys_exit or the callback.
 */
enum scratch_slot { SCRATCH_SWITCH, SCRATCH_SYS_EXIT, SCRATCH_WAKING, SCRATCH_SLOTS };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct ustack);
} ustack_scratch SEC(".maps");

/*
 * Stacks stored by hash (off-CPU kernel stacks, and user stacks of table
 * walks and off-CPU blocks) are keyed by STACK_HASH of the whole zero-padded
 * buffer: FNV-1a, then splitmix64's finalizer, so that two stacks a frame
 * apart differ in every bit of the key; the top bit is clear, so that a key
 * is never taken for a negative errno. The loops have no branch: the
 * verifier of every supported kernel walks them once, in max steps (a bound
 * of n frames was refused by 5.10's and 6.1's).
 */
#define STACK_HASH(ips, max) ({                                 \
	__u64 __h = 14695981039346656037ULL;                    \
	for (int __i = 0; __i < (max); __i++) {                 \
		__h ^= (ips)[__i];                              \
		__h *= 1099511628211ULL;                        \
	}                                                       \
	__h ^= __h >> 30;                                       \
	__h *= 0xbf58476d1ce4e5b9ULL;                           \
	__h ^= __h >> 27;                                       \
	__h *= 0x94d049bb133111ebULL;                           \
	__h ^= __h >> 31;                                       \
	__h & 0x7fffffffffffffffULL;                            \
})

/*
 * STACK_STORE stores the zero-padded buffer ips (max frames) in map under
 * its STACK_HASH and returns the key, or a negative errno. A key already
 * there is the same stack only if its frames are; another stack of the same
 * hash is a collision: counted in stat_collision and returned as -EEXIST,
 * never merged into the stored one. A full map is counted in stat_full.
 */
#define STACK_STORE(map, ips, max, stat_full, stat_collision) ({        \
	__s64 __key = STACK_HASH(ips, max);                             \
	__u64 *__old = bpf_map_lookup_elem(map, &__key);                \
	if (!__old) {                                                   \
		long __err = bpf_map_update_elem(map, &__key, ips, BPF_NOEXIST); \
		if (__err == -EEXIST) /* another CPU stored it since */ \
			__old = bpf_map_lookup_elem(map, &__key);       \
		else if (__err) {                                       \
			stat_inc(stat_full);                            \
			__key = __err;                                  \
		}                                                       \
	}                                                               \
	if (__old) {                                                    \
		__u64 __diff = 0;                                       \
		for (int __i = 0; __i < (max); __i++)                   \
			__diff |= __old[__i] ^ (ips)[__i];              \
		if (__diff) {                                           \
			stat_inc(stat_collision);                       \
			__key = -EEXIST;                                \
		}                                                       \
	}                                                               \
	__key;                                                          \
})

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/*
 * Processes to profile when filter_pids is set: the tgids in this hash. Its
 * memory follows the processes filtered, not pid_max: an array indexed by
 * tgid cost 8 bytes (the kernel's value alignment) per possible PID, 32 MiB
 * at systemd's pid_max of 4194304, for the one process of a --pid run.
 * User space sizes it to the PIDs given, or to the live processes a
 * launched command may have at once (follow_forks, where a full map is
 * counted: STAT_PID_FILTER_FULL), about 80 bytes an entry. Preallocated:
 * on Linux 6.18 a small hash without preallocation (max_entries 1 to 40
 * tried) answered no lookup from the perf_event program though user space
 * saw its entries, and nothing is allocated in NMI context this way. The
 * price of a hash, a hash of the tgid at each sample and context switch,
 * is mostly avoided by pid_hint below.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* resized by user space */
	__type(key, __u32);
	__type(value, __u8);
} pids SEC(".maps");

/*
 * A hint in front of the pids hash, so that the tasks that are not filtered
 * ones, most of those that switch, cost a load instead of a hash lookup:
 * pid_hint[tgid % PID_HINTS] is set for every tgid put in pids (by user
 * space before loading, by a followed fork), and never cleared; a tgid whose
 * hint is clear is not in pids. 4 KiB of .bss whatever pid_max is. Setting
 * a byte to 1 needs no atomic operation (BPF_OR is Linux 5.12).
 */
#define PID_HINTS 4096
__u8 pid_hint[PID_HINTS];

static __always_inline bool pid_wanted(__u32 tgid)
{
	if (!pid_hint[tgid & (PID_HINTS - 1)])
		return false;
	__u8 *w = bpf_map_lookup_elem(&pids, &tgid);
	return w && *w;
}

/*
 * The cgroup v2 subtrees to profile when filter_cgroups is set: user space
 * puts one cgroup directory's fd per entry. A subtree, not one cgroup: a
 * pod's containers, a slice's services and a Docker parent's containers are
 * all children of the cgroup users name. bpf_current_task_under_cgroup()
 * answers that for current (task_under_cgroup_hierarchy(),
 * include/linux/cgroup.h) in
 * perf_event and tracing programs alike, since Linux 4.9, so on every kernel
 * Ember supports, with no ancestor walk of our own.
 */
#define MAX_CGROUPS 16
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, MAX_CGROUPS);
	__type(key, __u32);
	__type(value, __u32);
} cgroups SEC(".maps");

/* cgroup_wanted reports whether current is in one of the filtered subtrees.
 * filter_cgroups is frozen at load time, so the verifier walks only that
 * many iterations. */
static __always_inline bool cgroup_wanted(void)
{
	for (__u32 i = 0; i < MAX_CGROUPS; i++) {
		if (i >= filter_cgroups)
			break;
		if (bpf_current_task_under_cgroup(&cgroups, i) == 1)
			return true;
	}
	return false;
}

/* Processes user space has been told about. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, __u8);
} known_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		(*v)++;
}

/* live_gen is the live set's generation: user space adds one at every flip,
 * so that a stack id kept across flips (a long block's, taken at switch-out)
 * is known stale however many flips passed; with the set index alone it
 * matched again after two, and its map had been cleared in between. The
 * live set is its low bit. */
static __always_inline __u32 live_gen(void)
{
	__u32 zero = 0;
	__u32 *s = bpf_map_lookup_elem(&active_set, &zero);
	return s ? *s : 0;
}

static __always_inline __u32 live_set(void)
{
	return live_gen() & 1;
}

/* wanted reports whether samples of process tgid are to be kept. current
 * must be the task (cgroup_wanted): the sampled one, or prev at a switch. */
static __always_inline bool wanted(__u32 tgid, __u32 tid)
{
	if (tid == 0)
		return include_idle;
	if (tgid == self_tgid)
		return false;
	if (filter_pids && !pid_wanted(tgid))
		return false;
	if (filter_cgroups && !cgroup_wanted())
		return false;
	return true;
}

#define PF_KTHREAD 0x00200000

static __always_inline bool is_kthread(struct task_struct *t)
{
	return BPF_CORE_READ(t, flags) & PF_KTHREAD;
}

static __always_inline void notify(__u32 type, __u32 pid)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_inc(STAT_EVENTS_LOST);
		return;
	}
	e->type = type;
	e->pid = pid;
	bpf_ringbuf_submit(e, 0);
}

#define PF_EXITING 0x00000004

/* note_process tells user space about a process the first time it is seen,
 * so that its /proc/PID/maps is read while it lives. Not by a thread that
 * is exiting (exiting: PF_EXITING): its process may have been told gone
 * already (exit_common), and would be told new again, its PID left in
 * known_pids for good, where a later process with that PID is taken as
 * known and never told. */
static __always_inline void note_process(__u32 tgid, bool exiting)
{
	__u8 one = 1;
	if (tgid == 0 || exiting || bpf_map_lookup_elem(&known_pids, &tgid))
		return;
	if (bpf_map_update_elem(&known_pids, &tgid, &one, BPF_NOEXIST) == 0)
		notify(EVENT_NEW_PROCESS, tgid);
}

static __always_inline void count_stack_error(long err, bool user)
{
	__u32 base = user ? STAT_USTACK_EEXIST : STAT_KSTACK_EEXIST;
	if (err == -EEXIST)
		stat_inc(base);
	else if (err == -EFAULT)
		stat_inc(base + 1);
	else if (err == -ENOMEM)
		stat_inc(base + 2);
	else
		stat_inc(base + 3);
}

static __always_inline long stackid(void *ctx, __u32 set, __u64 flags)
{
	long id = set ? bpf_get_stackid(ctx, &stacks1, flags) : bpf_get_stackid(ctx, &stacks0, flags);
	if (id < 0)
		count_stack_error(id, flags & BPF_F_USER_STACK);
	return id;
}

/* accumulate adds to a sample's value. On-CPU samples add no time: with ns
 * a constant 0, clang turns the add into an atomic OR (BPF_OR, Linux 5.12),
 * so it is left out, and only BPF_XADD remains, which every kernel has. */
static __always_inline void accumulate(struct sample_value *v, __u64 count, __u64 ns, bool timed)
{
	__sync_fetch_and_add(&v->count, count);
	if (timed)
		__sync_fetch_and_add(&v->ns, ns);
}

/* add accumulates one sample into the live counts map of set. */
static __always_inline void add(__u32 set, struct sample_key *key, __u64 count, __u64 ns, bool timed)
{
	void *map = set ? (void *)&counts1 : (void *)&counts0;
	struct sample_value *v = bpf_map_lookup_elem(map, key);
	if (v) {
		accumulate(v, count, ns, timed);
		return;
	}
	struct sample_value init = { .count = count, .ns = ns };
	if (bpf_map_update_elem(map, key, &init, BPF_NOEXIST) == 0)
		return;
	/* Another CPU inserted the same key in between: add to it. */
	v = bpf_map_lookup_elem(map, key);
	if (v) {
		accumulate(v, count, ns, timed);
		return;
	}
	stat_inc(STAT_COUNTS_FULL);
}

#include "unwind.bpf.h"
#include "stackcopy.bpf.h"
#include "thread.bpf.h"
#include "pending.bpf.h"
#include "offcpu.bpf.h"
#include "waker.bpf.h"

/* user_stack takes current's user stack: with unwind tables when the
 * variant has them and the process has its tables loaded, else with frame
 * pointers (bpf_get_stackid). */
static __always_inline void user_stack(void *ctx, bool tables, __u32 set, __u32 tgid, struct sample_key *key)
{
	if (tables) {
		struct unwind_proc *proc = bpf_map_lookup_elem(&unwind_procs, &tgid);
		if (proc) {
			__u32 reason;
			key->user_stack = unwind_user(UNWIND_SCRATCH_ONCPU, set, tgid, proc, &reason);
			key->user_flags = USER_STACK_HASHED | (reason & USER_STACK_REASON_MASK);
			return;
		}
		/* Tables not loaded yet: user space walks a copy (stackcopy.bpf.h). */
		__s64 c = copy_user_stack(tgid);
		if (c >= 0) {
			key->user_stack = c;
			key->user_flags = USER_STACK_COPIED;
			return;
		}
	}
	key->user_stack = stackid(ctx, set, BPF_F_USER_STACK);
}

static __always_inline int on_cpu_common(void *ctx, bool tables)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32, tid = (__u32)id;

	if (!wanted(tgid, tid))
		return 0;
	stat_inc(STAT_SAMPLES);
	/* A plain store: two CPUs racing here write times a hair apart, and
	 * compare-and-swap (BPF_CMPXCHG) needs Linux 5.12. */
	if (!first_sample_ns)
		first_sample_ns = bpf_ktime_get_ns();
	note_process(tgid, BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), flags) & PF_EXITING);

	__u32 set = live_set();
	struct sample_key key = {
		.pid = tgid,
		.tid = tid,
		.kind = KIND_ONCPU,
	};
	bpf_get_current_comm(&key.comm, sizeof(key.comm));
	key.kern_stack = stackid(ctx, set, 0);
	/* Kernel threads have no user stack: that is not a loss. */
	if (is_kthread((struct task_struct *)bpf_get_current_task()))
		key.user_stack = -ENOENT;
	else
		user_stack(ctx, tables, set, tgid, &key);
	add(set, &key, 1, 0, false);
	return 0;
}

SEC("perf_event")
int on_cpu_sample(void *ctx)
{
	return on_cpu_common(ctx, true);
}

SEC("perf_event")
int on_cpu_sample_fp(void *ctx)
{
	return on_cpu_common(ctx, false);
}

/* The process tracepoints, as tp_btf programs and as raw_tp ones for
 * kernels without tp_btf (TASK_READ, offcpu.bpf.h). */

/* Follow the children of a launched command (follow_forks). */
static __always_inline void fork_common(bool raw, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = TASK_READ(raw, parent, tgid), ctgid = TASK_READ(raw, child, tgid);
	__u8 one = 1;

	if (!follow_forks || ptgid == ctgid || !pid_wanted(ptgid))
		return;
	if (bpf_map_update_elem(&pids, &ctgid, &one, BPF_ANY))
		stat_inc(STAT_PID_FILTER_FULL);
	else
		pid_hint[ctgid & (PID_HINTS - 1)] = 1;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(follow_fork, struct task_struct *parent, struct task_struct *child)
{
	fork_common(false, parent, child);
	return 0;
}

SEC("raw_tp/sched_process_fork")
int follow_fork_raw(struct bpf_raw_tracepoint_args *ctx)
{
	fork_common(true, (void *)ctx->args[0], (void *)ctx->args[1]);
	return 0;
}

/* An exec replaces the mappings user space read: tell it to read them again.
 * The process's unwind entry describes the old image: drop it here, at the
 * exec, so that no walk between now and user space's reading of the exec
 * (a loaded machine takes seconds) uses the old image's tables; its samples
 * are copied instead (stackcopy.bpf.h) until the new image's entry is in. */
static __always_inline void exec_common(bool raw, struct task_struct *p)
{
	__u32 tgid = TASK_READ(raw, p, tgid);

	bpf_map_delete_elem(&unwind_procs, &tgid);
	if (bpf_map_delete_elem(&known_pids, &tgid) == 0)
		notify(EVENT_EXEC, tgid);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(process_exec, struct task_struct *p, pid_t old_pid, void *bprm)
{
	exec_common(false, p);
	return 0;
}

SEC("raw_tp/sched_process_exec")
int process_exec_raw(struct bpf_raw_tracepoint_args *ctx)
{
	exec_common(true, (void *)ctx->args[0]);
	return 0;
}

/* The last thread of a process exits: user space may forget it after the
 * next drain, and a followed pid leaves the filter before it can be reused.
 * The leader's exit is not the process's: when another thread execs, the
 * leader exits in de_thread() and the process goes on under its pid. So
 * look at signal->live, which do_exit() decrements before this tracepoint
 * (kernel/exit.c). Every thread's exit also clears its off-CPU records. */
static __always_inline void exit_common(bool raw, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);

	__u32 tid = BPF_CORE_READ(p, pid);
	struct offcpu_hot *h = hot_record(raw, p, tid, false);
	if (h && h->start_ns) /* it ran with a block whose end was not seen */
		unseen_end(raw, p, tid, h, switch_clock(raw, p));
	if (raw)
		bpf_map_delete_elem(&offcpu_threads, &tid);
	if (hot_by_tid && h) {
		/* Its thread ID may be reused: nothing of its blocks must stay. */
		h->start_ns = 0;
		h->flags = 0;
		h->capture = 0;
		h->runq_shift = 0;
	}
	if (BPF_CORE_READ(p, signal, live.counter) > 0)
		return;
	if (follow_forks)
		bpf_map_delete_elem(&pids, &tgid);
	if (bpf_map_delete_elem(&known_pids, &tgid) == 0)
		notify(EVENT_EXIT, tgid);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(process_exit, struct task_struct *p)
{
	exit_common(false, p);
	return 0;
}

SEC("raw_tp/sched_process_exit")
int process_exit_raw(struct bpf_raw_tracepoint_args *ctx)
{
	exit_common(true, (void *)ctx->args[0]);
	return 0;
}

/* Referenced so that their BTF reaches bpf2go, which generates Go types. */
const struct event *unused_event __attribute__((unused));
const struct ustack *unused_ustack __attribute__((unused));
const enum stat *unused_stat __attribute__((unused));
const enum sample_kind *unused_kind __attribute__((unused));
const enum event_type *unused_event_type __attribute__((unused));
const enum unwind_reason *unused_unwind_reason __attribute__((unused));
const enum errno *unused_errno __attribute__((unused));
