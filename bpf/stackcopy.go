package bpf

// UserStackCopied (sample_key.user_flags, USER_STACK_COPIED of
// stackcopy.bpf.h): the user stack is a copy in the StackCopies ring
// buffer, and the key's user stack its id; user space walks it.
const UserStackCopied = 1 << 10

// StackCopyBytes is STACK_COPY_BYTES of stackcopy.bpf.h: the most user
// stack one copy holds.
const StackCopyBytes = 8192
