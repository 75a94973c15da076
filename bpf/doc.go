// Package bpf holds Ember's BPF programs (ember.bpf.c and the headers beside
// it), the Go code bpf2go generates from them, and a typed loader.
//
// The generated *_bpfel.go and *_bpfel.o files are committed so that building
// Ember needs no clang; `make generate` rebuilds them. Only internal/tracer
// imports this package: it is the one place that talks to the kernel.
package bpf
