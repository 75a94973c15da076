package tracer

import (
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/emberprof/ember/internal/proc"
)

// A dynamically linked program's first load comes at its first sample, most
// often while its loader (ld.so) still maps its libraries: an entry written
// then lacks libc, and the walks of the samples taken until user space
// applies libc's mmap record (which drops the entry) stop at the first
// frame in libc ("code outside known mappings": 0.6-0.8% of a 50 ms C
// program's samples at load 5, TestFirstSamplesC). So no entry is written
// for a process recorded from its exec until every library its executable
// names (DT_NEEDED) is mapped: its samples meanwhile are copies, which user
// space walks after applying the records made before them. Each library's
// record asks for the load again; a process whose libraries are not all
// seen within librariesWait gets its entry anyway (a library under another
// name, a record lost), asked for by its copies.

// librariesWait bounds how long a process's entry waits for its libraries.
const librariesWait = 200 * time.Millisecond

// errLibrariesPending is load's error for a process whose loader has not
// mapped every library its executable names yet.
var errLibrariesPending = errors.New("libraries not mapped yet")

// librariesPending reports whether pid's entry should wait for libraries
// its executable names but p does not map yet, remembering since when.
func (u *unwinder) librariesPending(pid uint32, p *proc.Process) bool {
	if p.Exe == "" || !u.procs.Recorded(int(pid)) {
		return false
	}
	missing := u.missingLibrary(pid, p)
	u.mu.Lock()
	defer u.mu.Unlock()
	if missing == "" {
		delete(u.libsSince, pid)
		return false
	}
	since, ok := u.libsSince[pid]
	if !ok {
		u.libsSince[pid] = time.Now()
		return true
	}
	if time.Since(since) < librariesWait {
		return true
	}
	delete(u.libsSince, pid)
	slog.Debug("unwind entry written without a library its executable names", "pid", pid, "library", missing)
	return false
}

// missingLibrary returns the first library (DT_NEEDED) of p's executable
// that no mapping of p is a file of, "" if none (or the executable cannot
// be read: nothing to wait for then).
func (u *unwinder) missingLibrary(pid uint32, p *proc.Process) string {
	var exe *proc.Mapping
	for i := range p.Mappings {
		if p.Mappings[i].Path == p.Exe {
			exe = &p.Mappings[i]
			break
		}
	}
	if exe == nil {
		return ""
	}
	f, err := u.procs.Object(int(pid), exe)
	if err != nil {
		return ""
	}
	defer f.Release()
	ef, err := f.ELF()
	if err != nil {
		return ""
	}
	f.Lock()
	needed, err := ef.ImportedLibraries()
	f.Unlock()
	if err != nil {
		return ""
	}
	for _, lib := range needed {
		found := false
		for _, m := range p.Mappings {
			// The mapping's path is the file's own name: a soname such as
			// libstdc++.so.6 is a symlink to libstdc++.so.6.0.33.
			if strings.HasPrefix(filepath.Base(m.Path), lib) {
				found = true
				break
			}
		}
		if !found {
			return lib
		}
	}
	return ""
}
