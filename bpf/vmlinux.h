/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A minimal, hand-written subset of the kernel types Ember's programs touch.
 *
 * Full bpftool-generated vmlinux.h files are megabytes per architecture; the
 * programs only read a handful of task_struct fields, and every access goes
 * through CO-RE relocations (preserve_access_index), so the real layout comes
 * from the running kernel's BTF at load time. The same header therefore serves
 * amd64 and arm64.
 */
#ifndef __EMBER_VMLINUX_H__
#define __EMBER_VMLINUX_H__

typedef unsigned char __u8;
typedef short int __s16;
typedef short unsigned int __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long int __s64;
typedef long long unsigned int __u64;
typedef __u8 u8;
typedef __s16 s16;
typedef __u16 u16;
typedef __s32 s32;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
enum { false = 0, true = 1 };
typedef int pid_t;

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_STACK_TRACE = 7,
	BPF_MAP_TYPE_CGROUP_ARRAY = 8,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_F_NO_PREALLOC = 1,
	BPF_F_MMAPABLE = 1024,
};

enum {
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	BPF_F_SKIP_FIELD_MASK = 255,
	BPF_F_USER_STACK = 256,
	BPF_F_FAST_STACK_CMP = 512,
	BPF_F_REUSE_STACKID = 1024,
	BPF_F_USER_BUILD_ID = 2048,
};

#ifndef __ksym
#define __ksym __attribute__((section(".ksyms")))
#endif

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

typedef struct {
	int counter;
} atomic_t;

struct signal_struct {
	atomic_t live; /* threads not yet exiting */
};

struct task_struct {
	struct signal_struct *signal;
	unsigned int __state;
	unsigned int flags;
	int on_cpu;
	pid_t pid;
	pid_t tgid;
	struct task_struct *group_leader;
	char comm[16];
};

/* The user registers an unwind starts from (CO-RE: only the fields read). */
#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long di;
	unsigned long bp;
	unsigned long ip;
	unsigned long sp;
};
#elif defined(__TARGET_ARCH_arm64)
struct pt_regs { /* arm64: regs[] and sp, pc sit in an anonymous union member */
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
};
#else
struct pt_regs;
#endif

/* Before Linux 5.14 the task state was a long called state. */
struct task_struct___old {
	long state;
};

#pragma clang attribute pop

/* The context of a raw_tp program: the tracepoint's arguments. */
struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

/* Linux 6.18: a map value field through which a BPF callback is queued to
 * run in a task's own context (task_work) on its way back to user mode. The
 * verifier finds it by name; its layout is opaque. */
struct bpf_task_work {
	__u64 __opaque;
} __attribute__((aligned(8)));

/* A definition, not a declaration: cilium/ebpf matches kfunc signatures
 * against the kernel's by kind and name, and a forward declaration is of
 * another kind than the kernel's struct. Never dereferenced. */
struct bpf_map {
	__u64 __unused;
};
typedef int (*bpf_task_work_callback_t)(struct bpf_map *map, void *key, void *value);

#endif /* __EMBER_VMLINUX_H__ */
