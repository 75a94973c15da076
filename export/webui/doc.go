// Package webui serves a profile in google/pprof's own web interface (flame
// graph, top, graph, source, peek, disassembly) through
// github.com/google/pprof/driver, so that `ember serve` offers what
// `go tool pprof -http` offers without needing Go installed.
//
// Unlike pprof's default server, it exposes only pprof's handlers (nothing
// registered on http.DefaultServeMux leaks through), listens where the caller
// asked (localhost by default), and, when bound to a loopback address,
// answers only loopback clients whose Host header names a loopback host, which
// keeps DNS rebinding pages out.
package webui
