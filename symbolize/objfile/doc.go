// Package objfile is what Ember knows of an object file before it reads any
// table from it: its build IDs, the key it is cached under, and the image of
// the vDSO, which no file on disk holds. Package symbolize (symbol and line
// tables), symbolize/debuginfod (checking a fetched file) and the tracer's
// unwind-table builder all identify binaries through it, so that they agree:
// a binary has one build ID and one cache key wherever it is read.
//
// It imports nothing of Ember's and reads no /proc file of another process:
// opening a process's files safely is internal/proc's job.
package objfile
