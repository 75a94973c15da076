// Package tracer is the one place Ember talks to the kernel: it checks that
// the kernel and the process's privileges allow profiling, loads the BPF
// programs of package bpf, attaches them (perf events per CPU, BTF
// tracepoints), follows new processes through a ring buffer, and drains the
// double-buffered counts and stack maps into plain Go samples.
//
// User stacks are walked in the kernel with unwind tables (package unwind)
// where the kernel allows it: a background worker (unwind.go) builds the
// tables of each new process's binaries, once per build ID, and writes them
// and the process's mappings into the BPF maps; until then, and for Go
// binaries, the walk follows frame pointers. The sampling path never waits
// for a table.
package tracer
