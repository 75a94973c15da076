// Package symbolize turns addresses into frames: function, file, line and
// column, with inlined calls expanded innermost first.
//
// A profile taken by the tracer holds only addresses and the mappings they fall
// in. Symbolizing is a separate pass over that profile (Symbolizer.Symbolize),
// done on the host where the binaries and their debug files are, so that it
// can be cached by build ID and kept out of the sampling path. Object is the
// lower level: one ELF file, asked for the frames of ELF virtual addresses;
// `ember symbolize --exe` prints them in llvm-symbolizer's output form.
//
// The sources of names, tried in this order for an address:
//
//   - Go's pclntab (Go 1.20 and later), with its inline tree; it survives
//     stripping (-ldflags=-s -w).
//   - DWARF 2 to 5 line tables and inlined subroutines, from the binary itself
//     or a separate debug file found by build ID (/usr/lib/debug/.build-id) or
//     .gnu_debuglink (CRC checked); compressed sections (zlib, zstd, .zdebug).
//   - ELF .symtab and .dynsym, and the MiniDebugInfo symbol table in
//     .gnu_debugdata (xz). As llvm-symbolizer does, the outermost frame takes
//     the symbol table's name when there is one (it names clones such as
//     foo.cold and foo.isra.0).
//   - /proc/kallsyms for kernel addresses: Frame.File is pprof.KernelFile for the
//     core kernel and "[module]" for a module's symbols; no line numbers.
//   - for JIT code, the runtime's names: its jitdump file (jit-PID.dump:
//     Python 3.13 -X perf_jit, node --perf-prof; jitdump.go) or its perf
//     map (/tmp/perf-PID.map: Python -X perf, node --perf-basic-prof), read
//     into one result with one lookup; the name as the runtime wrote it (as
//     perf shows it), no file.
//
// The DWARF reader is this package's own, not debug/dwarf: it reads only the
// attributes symbolizing needs, keeps strings as offsets until a frame asks
// for a name, and reads a unit (line table, top-level functions) when an
// address first falls in it and a function's inline tree when an address
// first falls in that function. It is faster than llvm-symbolizer on large
// binaries and holds half the memory (see BenchmarkVsLLVM).
//
// Every parser treats its input as hostile: sizes are capped, an ELF file
// whose headers point beyond its end is refused before it is read, panics
// (and faults on a memory-mapped file that shrinks) are recovered at the
// boundary and turned into errors that name the file, and one bad file costs
// only its own frames. Each parser has a fuzz target.
//
// The symbolizer opens no process's files itself: its caller hands them in
// (Options.OpenObject and Open; the agent passes proc.Table.Object, which
// reads /proc/PID/map_files, reaching deleted and memfd files while the
// process lives, else openat2 in /proc/PID/root with RESOLVE_IN_ROOT |
// RESOLVE_NO_MAGICLINKS, so a container's symlinks never lead onto the host).
// Without them it opens a mapping's path as given (os.Open), which is right
// for profiles read from disk.
//
// Names are demangled (C++ Itanium, Rust legacy and v0) with
// github.com/ianlancetaylor/demangle in LLVM style, bounded in length.
package symbolize
