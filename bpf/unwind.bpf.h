/* SPDX-License-Identifier: GPL-2.0 */
/*
 * User stacks walked with unwind tables, included by ember.bpf.c.
 *
 * bpf_get_stackid follows frame pointers, which most distribution binaries
 * (and every frameless leaf gcc emits) do not keep. User space (package
 * unwind, internal/tracer/unwind.go) turns each binary's .eh_frame into
 * compact tables and loads them into the maps below; this walks a stack
 * with them, one frame per bpf_loop iteration so that the verifier checks
 * one step, not 127. The layout and the walk are those of unwind/doc.go,
 * byte for byte; unwind.Unwind is its reference in Go.
 *
 * A walk that stops before the outermost frame keeps the frames it found
 * and reports why (enum unwind_reason): the sample key carries the reason,
 * a per-CPU counter counts it. Mappings flagged MAPPING_FP (Go binaries,
 * binaries without CFI) are walked with frame pointers.
 */

#define UNWIND_PAGE_SHIFT 16
#define UNWIND_SEARCH_STEPS 16
#define UNWIND_MAX_MAPPINGS 256
#define UNWIND_MAPPING_STEPS 9
#define UNWIND_MAX_FRAMES 127
#define MAPPING_FP 1

enum unwind_cfa { CFA_NONE, CFA_SP, CFA_FP, CFA_PLT, CFA_EXPR, CFA_OTHER_REG, CFA_BAD_RULE, CFA_INVALID,
		  CFA_DEREF_FP };
enum unwind_fp { FP_SAME, FP_OFFSET, FP_UNDEFINED, FP_AT_FP };
/* RA_SWITCH: as RA_OFFSET, at a switch of stacks (Go's systemstack,
 * asmcgocall, mcall: from the g0 stack back to the goroutine's), where the
 * CFA need not be above SP. */
enum unwind_ra { RA_OFFSET, RA_LINK, RA_UNDEFINED, RA_SWITCH };

struct unwind_row {
	__u16 pc_lo; /* PC offset inside the page */
	__u16 rule;  /* index from unwind_table.first_rule */
};

struct unwind_rule {
	__s32 cfa_rules; /* bits 0-3 cfa, 4-5 fp, 6-7 ra; 8-31 signed CFA offset */
	__s16 fp_off;
	__s16 ra_off;
};

struct unwind_page {
	__u32 first_row;
	__u32 nrows;
};

struct unwind_table {
	__u64 base;
	__u32 first_row, nrows;
	__u32 first_page, npages;
	__u32 first_rule, nrules;
	__u32 arch;
	__u32 _pad;
};

struct unwind_mapping {
	__u64 start, end;
	__u64 bias;
	__u32 table_id;
	__u32 flags;
};

struct unwind_proc {
	__u32 nmappings;
	__u32 stale; /* user space writes 0; set once a walk met an unknown PC */
	struct unwind_mapping m[UNWIND_MAX_MAPPINGS];
};

/* Sizes are set by user space at load (bpf.Config). The three big arrays
 * are memory-mapped, so user space writes a table with one copy. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct unwind_row);
} unwind_rows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct unwind_rule);
} unwind_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct unwind_page);
} unwind_pages SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct unwind_table);
} unwind_tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct unwind_proc);
} unwind_procs SEC(".maps");

/* The walk in progress; per CPU, since it is too big for the BPF stack. One
 * slot for on-CPU samples (perf event, in interrupt context), which can
 * interrupt any other, then one per off-CPU context (enum scratch_slot). */
#define UNWIND_SCRATCH_ONCPU 0
#define UNWIND_SCRATCH_OFFCPU(slot) (1 + (slot))
struct unwind_state {
	__u64 pc, sp, fp, lr;
	__u32 n, reason;
	struct ustack st; /* the PCs, leaf first, zero-padded */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1 + SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct unwind_state);
} unwind_scratch SEC(".maps");

/* What the bpf_loop callback needs; lives on the caller's stack. */
struct unwind_ctx {
	struct unwind_state *s;
	struct unwind_proc *proc;
};

static __always_inline long unwind_stop(struct unwind_state *s, __u32 reason)
{
	s->reason = reason;
	return 1;
}

/* The two searches of a step are global functions, which the verifier
 * checks once each, alone, with their arguments unknown. Inlined in
 * unwind_step, a bpf_loop callback, they were checked again on every path
 * into them (the callback is checked until its states converge, and each
 * binary search forks at every one of its 9 or 16 steps): 115k of the
 * 132k instructions the verifier processed for on_cpu_sample, most of its
 * ~300 ms of CPU at each start. */

/* mapping_index returns the index in proc of the mapping that holds pc, or
 * -1. */
__attribute__((noinline)) __s32 mapping_index(struct unwind_proc *proc, __u64 pc)
{
	if (!proc)
		return -1;
	__u32 lo = 0, hi = proc->nmappings;

	if (hi == 0 || hi > UNWIND_MAX_MAPPINGS)
		return -1;
	for (int k = 0; k < UNWIND_MAPPING_STEPS && hi - lo > 1; k++) {
		__u32 mid = lo + (hi - lo) / 2;
		if (proc->m[mid & (UNWIND_MAX_MAPPINGS - 1)].start <= pc)
			lo = mid;
		else
			hi = mid;
	}
	lo &= UNWIND_MAX_MAPPINGS - 1;
	if (pc < proc->m[lo].start || pc >= proc->m[lo].end)
		return -1;
	return lo;
}

/* rule_index returns the index in unwind_rules of the rule of table tid for
 * virtual address vaddr, or the negated reason there is none. */
__attribute__((noinline)) __s64 rule_index(__u32 tid, __u64 vaddr)
{
	struct unwind_table *t = bpf_map_lookup_elem(&unwind_tables, &tid);
	if (!t || t->npages == 0)
		return -REASON_BAD_TABLE;
	if (vaddr < t->base || (vaddr - t->base) >> UNWIND_PAGE_SHIFT >= t->npages)
		return -REASON_NO_ROW;
	__u32 pidx = t->first_page + ((vaddr - t->base) >> UNWIND_PAGE_SHIFT);
	struct unwind_page *pg = bpf_map_lookup_elem(&unwind_pages, &pidx);
	if (!pg || pg->nrows == 0)
		return -REASON_BAD_TABLE;
	__u16 rel = vaddr - t->base; /* offset inside the page */
	__u32 base = t->first_row + pg->first_row, lo = 0, hi = pg->nrows;
	for (int k = 0; k < UNWIND_SEARCH_STEPS && hi - lo > 1; k++) {
		__u32 mid = lo + (hi - lo) / 2, idx = base + mid;
		struct unwind_row *row = bpf_map_lookup_elem(&unwind_rows, &idx);
		if (!row)
			return -REASON_BAD_TABLE;
		if (row->pc_lo <= rel)
			lo = mid;
		else
			hi = mid;
	}
	if (hi - lo > 1)
		return -REASON_BAD_TABLE;
	__u32 idx = base + lo;
	struct unwind_row *row = bpf_map_lookup_elem(&unwind_rows, &idx);
	if (!row || row->rule >= t->nrules)
		return -REASON_BAD_TABLE;
	return t->first_rule + row->rule;
}

static __always_inline long read_u64(__u64 *dst, __u64 addr)
{
	return bpf_probe_read_user(dst, sizeof(*dst), (void *)addr);
}

/* fp_step steps to the caller with frame pointers: [fp] is the caller's fp,
 * [fp+8] the return address. Mappings without tables (MAPPING_FP: JIT code,
 * Go before 1.20) and code a table has no row for are walked so, and the
 * walk goes on with tables in the caller's mapping. It returns 1 to stop. */
static __always_inline long fp_step(struct unwind_state *s)
{
	__u64 next[2];
	if (s->fp == 0)
		return unwind_stop(s, REASON_COMPLETE);
	if (s->fp < s->sp)
		return unwind_stop(s, REASON_BAD_FRAME);
	if (bpf_probe_read_user(next, sizeof(next), (void *)s->fp))
		return unwind_stop(s, REASON_READ_FAILED);
	s->pc = next[1];
	s->sp = s->fp + 16;
	s->fp = next[0];
	return 0;
}

/* rule_step steps to the caller with a table's rule r for pc: the CFA, then
 * the return address and the caller's frame pointer relative to it. leaf says
 * this is the first frame (only a leaf keeps its RA in a register). It
 * returns 1 to stop. */
static __always_inline long rule_step(struct unwind_state *s, struct unwind_rule *r, __u64 pc, bool leaf)
{
	__u8 rules = r->cfa_rules & 0xff;
	__s64 cfa_off = r->cfa_rules >> 8;
	__u64 cfa;
	switch (rules & 15) {
	case CFA_NONE:
		return fp_step(s); /* as no row */
	case CFA_SP:
		cfa = s->sp + cfa_off;
		break;
	case CFA_FP:
		cfa = s->fp + cfa_off;
		break;
	case CFA_PLT:
		cfa = s->sp + cfa_off + ((pc & 15) >= (__u64)r->fp_off ? 8 : 0);
		break;
	case CFA_DEREF_FP:
		if (read_u64(&cfa, s->fp + cfa_off))
			return unwind_stop(s, REASON_READ_FAILED);
		break;
	default:
		return unwind_stop(s, REASON_UNSUPPORTED);
	}

	__u64 ra;
	__u32 ra_rule = (rules >> 6) & 3;
	if (ra_rule == RA_UNDEFINED)
		return unwind_stop(s, REASON_COMPLETE);
	if (ra_rule == RA_LINK) {
		if (!leaf)
			return unwind_stop(s, REASON_BAD_FRAME);
		ra = s->lr;
	} else if (read_u64(&ra, cfa + r->ra_off)) {
		return unwind_stop(s, REASON_READ_FAILED);
	}

	switch ((rules >> 4) & 3) {
	case FP_OFFSET:
		if (read_u64(&s->fp, cfa + r->fp_off))
			return unwind_stop(s, REASON_READ_FAILED);
		break;
	case FP_AT_FP:
		if (read_u64(&s->fp, s->fp + r->fp_off))
			return unwind_stop(s, REASON_READ_FAILED);
		break;
	case FP_UNDEFINED:
		s->fp = 0;
		break;
	}
	/* The caller's stack pointer is the CFA: the stack must move up (but
	 * for a switch of stacks; MAX_FRAMES bounds a walk that loops). */
	if (cfa <= s->sp && !(ra_rule == RA_LINK && cfa == s->sp) && ra_rule != RA_SWITCH)
		return unwind_stop(s, REASON_BAD_FRAME);
	s->pc = ra;
	s->sp = cfa;
	return 0;
}

/* unwind_step records the current frame and steps to its caller; it returns
 * 1 to stop. i is the frame number. */
static long unwind_step(__u64 i, struct unwind_ctx *c)
{
	struct unwind_state *s = c->s;
	struct unwind_proc *proc = c->proc;

	if (s->pc == 0)
		return unwind_stop(s, REASON_COMPLETE);
	__u32 n = s->n;
	if (n >= UNWIND_MAX_FRAMES)
		return 1; /* s->reason starts as REASON_MAX_FRAMES */
	s->st.ips[n] = s->pc;
	s->n = n + 1;
	__u64 pc = i ? s->pc - 1 : s->pc; /* a return address points after the call */
	__s32 mi = mapping_index(proc, pc);
	if (mi < 0)
		return unwind_stop(s, REASON_NO_MAPPING);
	struct unwind_mapping *m = &proc->m[mi & (UNWIND_MAX_MAPPINGS - 1)];

	if (m->flags & MAPPING_FP)
		return fp_step(s);

	__s64 ridx = rule_index(m->table_id, pc - m->bias);
	if (ridx == -REASON_NO_ROW) {
		/* Code the table does not describe inside a tabled file (V8's
		 * builtins embedded in node, hand-written trampolines): like JIT
		 * code, it keeps frame pointers. (The reason stays as it was: a
		 * walk that goes on from here and runs out of frames is
		 * REASON_MAX_FRAMES, as unwind.Unwind says.) */
		return fp_step(s);
	}
	if (ridx < 0)
		return unwind_stop(s, -ridx);
	__u32 ri = ridx;
	struct unwind_rule *r = bpf_map_lookup_elem(&unwind_rules, &ri);
	if (!r)
		return unwind_stop(s, REASON_BAD_TABLE);
	return rule_step(s, r, pc, i == 0);
}

/* unwind_user walks current's user stack (from its pt_regs: the state of
 * user mode when it entered the kernel) with the tables of proc, stores it
 * in the set's hashed_ustacks map and returns its key (or a negative errno), with
 * the reason the walk stopped in *reason. It is a global function, so the
 * verifier checks it once per program rather than at each of its three call
 * sites (on-CPU, switch-out, sys_exit): that cut loading from 400 to 150 ms. */
__attribute__((noinline)) __s64 unwind_user(__u32 slot, __u32 set, __u32 tgid, struct unwind_proc *proc,
					      __u32 *reason)
{
	if (!proc || !reason)
		return -EINVAL;
	struct unwind_state *s = bpf_map_lookup_elem(&unwind_scratch, &slot);

	*reason = REASON_COMPLETE;
	if (!s)
		return -ENOMEM;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (!regs)
		return -EFAULT;
#if defined(__TARGET_ARCH_x86)
	s->pc = regs->ip;
	s->sp = regs->sp;
	s->fp = regs->bp;
	s->lr = regs->di; /* RA_LINK on x86-64: glibc's __vfork keeps its RA in rdi */
#elif defined(__TARGET_ARCH_arm64)
	s->pc = regs->pc;
	s->sp = regs->sp;
	s->fp = regs->regs[29];
	s->lr = regs->regs[30];
#else
	return -EOPNOTSUPP;
#endif
	s->n = 0;
	s->reason = REASON_MAX_FRAMES;
	__builtin_memset(&s->st, 0, sizeof(s->st));

	struct unwind_ctx c = { .s = s, .proc = proc };
	bpf_loop(UNWIND_MAX_FRAMES, unwind_step, &c, 0);

	stat_inc(STAT_UNWIND_WALKS);
	*reason = s->reason;
	if (s->reason != REASON_COMPLETE && s->reason < REASON_MAX)
		stat_inc(STAT_UNWIND_NO_MAPPING + s->reason - 1);
	/* Code mapped after user space read the maps (the libraries of a
	 * process first seen at exec, dlopen): ask once for a new entry, which
	 * clears the flag. (Two CPUs may both ask: user space does it once.) */
	if (s->reason == REASON_NO_MAPPING && !proc->stale) {
		proc->stale = 1;
		notify(EVENT_MAPS_CHANGED, tgid);
	}
	if (s->n == 0)
		return -EFAULT;

	void *map = set ? (void *)&hashed_ustacks1 : (void *)&hashed_ustacks0;
	return STACK_STORE(map, s->st.ips, MAX_USTACK_DEPTH, STAT_UNWIND_USTACK_FULL, STAT_USTACK_HASH_COLLISION);
}
