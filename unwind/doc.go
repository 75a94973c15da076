// Package unwind turns the call frame information of ELF binaries into
// compact tables that a BPF program can walk user stacks with.
package unwind
