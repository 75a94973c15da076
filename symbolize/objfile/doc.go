// Package objfile is what Ember knows of an object file before it reads any
// table from it: its build IDs, the key it is cached under, the image of
// the vDSO, which no file on disk holds, and the cache that holds each
// mapped file open once (Cache: the descriptor, its parsed ELF headers and
// sections, its build IDs). Package symbolize (symbol and line tables),
// symbolize/debuginfod (checking a fetched file), internal/proc (holding a
// process's files) and the tracer's unwind-table builder all identify and
// read binaries through it, so that they agree, a binary has one build ID
// and one cache key wherever it is read, and a file is opened and its ELF
// parsed once per run.
//
// It imports nothing of Ember's (internal/layering checks it) and opens no
// file of another process: opening a process's files safely is
// internal/proc's job, which gives the cache the files it opens.
package objfile
