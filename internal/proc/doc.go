// Package proc reads what Ember needs from /proc: a process's memory mappings,
// its names and its cgroup, and keeps them for processes that have exited, so
// that samples taken before the exit still symbolize.
//
// Everything read from /proc is treated as hostile input: lines are bounded,
// malformed lines are skipped with an error, and no parser panics.
package proc
