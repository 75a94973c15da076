package proc

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// A table for a cgroup-filtered tracer keeps only processes under those
// cgroups. The kernel's filter looks at the sampled task, but user space
// reads /proc/PID for PIDs it is told of later (an exec or exit event, a
// drained sample, a stack copy, a fork record of a known parent), and a PID
// can name another process by then: the tracer's announced-PID set keeps
// PIDs of processes long gone (seen on Linux 6.18: 4,913 of its 4,945
// entries after 60 s of churn), pid_max is 32,768 here, and the PIDs wrap
// within a minute when the host builds. An exec of a reused PID then read
// another program's mappings (a shell's ls and sort, libLLVM, another
// test's server) and built unwind tables for it, and the processes it
// forked followed it in by their fork records. Where the table has a scope,
// every reading of a process checks the cgroup /proc gives it now.

// ErrOutOfScope says a process is not under the cgroups the table is for.
var ErrOutOfScope = errors.New("not under the cgroups profiled")

// SetCgroupScope limits the table to processes under the cgroup v2
// directories dirs (as CgroupDir returns them) and their descendants. It is
// called before the table is used; none: every process.
func (t *Table) SetCgroupScope(dirs []string) error {
	if len(dirs) == 0 {
		return nil
	}
	mounts, _, err := cgroupMounts()
	if err != nil {
		return err
	}
	var scope []string
	for _, d := range dirs {
		p, ok := cgroupPath(mounts, d)
		if !ok {
			return fmt.Errorf("cgroup %s is under no cgroup2 mount (%s)", d, strings.Join(mounts, ", "))
		}
		scope = append(scope, p)
	}
	t.scope = scope
	return nil
}

// cgroupPath returns dir as /proc/PID/cgroup names it: relative to the
// cgroup2 mount it is under, with a leading slash.
func cgroupPath(mounts []string, dir string) (string, bool) {
	dir = filepath.Clean(dir)
	for _, m := range mounts {
		rel, err := filepath.Rel(filepath.Clean(m), dir)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		return filepath.Join("/", rel), true
	}
	return "", false
}

// inScope reports whether a process in cgroup (its /proc/PID/cgroup path)
// is one the table keeps. An unknown cgroup ("": the process is gone) is
// not, where there is a scope; Exec and Fork records of a process already
// gone are taken on the known parent's word (record.go).
func (t *Table) inScope(cgroup string) bool {
	if t.scope == nil {
		return true
	}
	for _, s := range t.scope {
		if s == "/" || cgroup == s || strings.HasPrefix(cgroup, s+"/") {
			return true
		}
	}
	return false
}

// scopeErr is the error of a reading of pid refused by the scope.
func scopeErr(pid int, cgroup string) error {
	return fmt.Errorf("process %d in cgroup %q: %w", pid, cgroup, ErrOutOfScope)
}
