// Package symbolize turns addresses into frames: function, file, line and
// column, with inlined calls expanded innermost first.
//
// A profile taken by the tracer holds only addresses and the mappings they fall
// in. Symbolizing is a separate pass over that profile, done on the host where
// the binaries and their debug files are, so that it can be cached by build ID
// and kept out of the sampling path.
//
// The sources of names, tried in this order for an address:
//
//   - Go's pclntab, with its inline tree; it survives stripping (-ldflags=-s -w).
//   - DWARF 4 and 5 line tables and inlined subroutines, from the binary itself
//     or a separate debug file found by build ID (/usr/lib/debug/.build-id) or
//     .gnu_debuglink (CRC checked); compressed sections (zlib, zstd) included.
//   - ELF .symtab and .dynsym, and the MiniDebugInfo symbol table in
//     .gnu_debugdata (xz).
//   - /proc/kallsyms for kernel addresses, with module symbols.
//   - /tmp/perf-PID.map for JIT code (Python -X perf, node --perf-basic-prof).
//
// Every parser treats its input as hostile: sizes are capped, panics are
// recovered at the boundary and turned into errors that name the file, and one
// bad file costs only its own frames.
//
// Names are demangled (C++ Itanium, Rust legacy and v0) with
// github.com/ianlancetaylor/demangle in LLVM style, bounded in length, so that
// the output can be compared with llvm-symbolizer line by line.
package symbolize
