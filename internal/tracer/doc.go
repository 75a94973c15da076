// Package tracer is the one place Ember talks to the kernel: it checks that
// the kernel and the process's privileges allow profiling, loads the BPF
// programs of package bpf, attaches them (perf events per CPU, BTF
// tracepoints), follows new processes through a ring buffer, and drains the
// double-buffered counts and stack maps into plain Go samples.
package tracer
