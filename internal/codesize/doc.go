// Package codesize holds only a test: it keeps every hand-written source file
// of the repository under 600 lines and every function of the BPF programs
// under 80, so that each file does one job and each kernel-side function can
// be read, like libbpf-tools' programs, on one screen.
//
// Generated files (bpf2go's *_bpfel.go and *_bpfeb.go, the trimmed
// vmlinux.h) are exempt: no one edits them by hand.
package codesize
