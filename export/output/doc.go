// Package output writes a profile in the form its file name asks for, so that
// every command that produces a profile (record, agent, flamegraph) accepts
// the same output names: gzipped pprof, an HTML or SVG flame graph, or
// folded stacks.
package output
