// Package gopclntab reads the pclntab of Go binaries (Go 1.20 and later,
// magic 0xfffffff1): the function table, names, and the pc-value tables
// (pcsp, pcfile, pcln, pcdata) that the runtime itself decodes in
// runtime/symtab.go. It is the one reader both consumers share: package
// symbolize turns PCs into function, file:line and inlined frames, and
// package unwind turns every function's pcsp table (the stack pointer delta
// at each PC) into unwind table rows.
//
// The table survives stripping (-s -w): it is .gopclntab in internally
// linked binaries and sits inside .data.rel.ro (or .rodata) in externally
// linked ones (cgo), found there by the runtime.pclntab symbol or, stripped,
// by its header. Everything read is treated as hostile: offsets are checked,
// decoding steps are capped, and no panic escapes (Find and Parse recover).
//
// It is a public package beside symbolize, not under internal/, because
// both libraries import it and libraries import nothing under internal/
// (internal/layering). It imports nothing of Ember's.
//
// Go's debug/gosym does not expose pcsp, hence this package. Before Go 1.20
// (magic 0xfffffff0 and older) ErrOldGo is returned, wrapped, so that callers
// can fall back (unwinding with frame pointers) and say why.
package gopclntab
