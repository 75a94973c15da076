// Package layering has no code, only a test: it keeps the imports of the
// module flowing one way, as docs/design.md's layout says. The libraries
// (symbolize, unwind, export and their subpackages) work on files and
// profiles: they import neither the kernel side (package bpf, cilium/ebpf)
// nor anything under internal/. Only internal/tracer talks to the kernel
// through package bpf. The test reads the real import graph with
// `go list -deps`, so a new edge fails `make test` with the path that
// brought it in.
package layering
