// Package agent wires Ember's stages together: the tracer's drained samples
// and the process table become a pprof profile (collect.go), which is
// symbolized and written by `ember record` (record.go) or shipped on a
// schedule by `ember agent`.
package agent
