package agent

import (
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/tracer"
	"github.com/emberprof/ember/symbolize/objfile"
	"github.com/emberprof/ember/unwind"
)

// collector turns drained samples into one profile, remembering for each
// Mapping which process and file it came from so the symbolizer can open it.
type collector struct {
	b     *pprof.Builder
	procs *proc.Table
	files map[*profile.Mapping]mappingSource
	pids  map[uint32]bool

	kernel *profile.Mapping

	// service names a process's service for the service_name label; nil
	// leaves it out (record).
	service func(*proc.Process) string

	// wakers puts each off-CPU block's waker beneath its stack.
	wakers bool

	// jitMaps holds each JIT process's jitdump file or perf map open from
	// the drain that first saw its JIT code until symbolizing is done
	// (close): once the process has exited, /proc/PID/root, the only way
	// to its /tmp, is gone. jitPaths is the path each was opened by.
	jitMaps  map[int]*os.File
	jitPaths map[int]string

	// unmapped counts the stacks with user frames in none of their
	// process's mappings, current or before its last exec (UnmappedFrame).
	unmapped uint64
}

// UnmappedStat is the loss counter of stacks marked UnmappedFrame.
const UnmappedStat = "user_frames_unmapped"

type mappingSource struct {
	pid int
	m   proc.Mapping
	// jit: the mapping is JIT code named by the process's jitdump file
	// or perf map (proc.Table.OpenJIT).
	jit bool
}

func newCollector(mode pprof.Mode, hz int, start time.Time, procs *proc.Table) *collector {
	return &collector{
		b:        pprof.NewBuilder(mode, hz, start),
		procs:    procs,
		files:    map[*profile.Mapping]mappingSource{},
		pids:     map[uint32]bool{},
		jitMaps:  map[int]*os.File{},
		jitPaths: map[int]string{},
	}
}

// close releases the perf maps held for symbolizing.
func (c *collector) close() {
	for pid, f := range c.jitMaps {
		f.Close()
		delete(c.jitMaps, pid)
	}
	clear(c.jitPaths)
}

var stateLabel = map[uint32]string{
	tracer.KindOffCPUSleep: "sleeping",
	tracer.KindOffCPUDisk:  "disk",
	tracer.KindOffCPURunQ:  "runnable",
	tracer.KindOffCPUOther: "other",
}

// add adds one drain's samples.
func (c *collector) add(samples []tracer.Sample) {
	refreshed := map[uint32]bool{}
	for _, s := range samples {
		c.pids[s.PID] = true
		p := c.process(s.PID, refreshed)
		st := stack{kernel: s.Kernel, user: s.User, kernErr: s.KernErr, userErr: s.UserErr,
			tables: s.UserTables, reason: s.UserReason, fpFallback: s.UserFPFallback, onCPU: s.Kind == tracer.KindOnCPU}
		locs := c.locations(make([]*profile.Location, 0, len(s.Kernel)+len(s.User)+1), s.PID, p, st, refreshed)
		if len(locs) == 0 {
			locs = append(locs, c.b.Pseudo("[no stack]"))
		}
		l := pprof.Labels{PID: int64(s.PID), TID: int64(s.TID), Thread: s.Comm, Comm: s.Comm}
		if p != nil {
			l.Comm, l.Cgroup = processComm(s.Comm, p), p.Cgroup
			l.ContainerID, l.PodUID = p.Container.ID, p.Container.PodUID
			if p.NSPID != p.PID {
				l.NSPID = int64(p.NSPID)
			}
		}
		if c.service != nil {
			l.Service = c.service(p)
		}
		v := pprof.Value{}
		if s.Kind == tracer.KindOnCPU {
			v.Samples = int64(s.Count)
		} else {
			v.OffCPUNS, v.Blocks = int64(s.NS), int64(s.Count)
			l.State = stateLabel[s.Kind]
			locs = c.wakerLocations(locs, s.Waker, &l, refreshed)
		}
		c.b.Add(locs, v, l)
	}
}

// processComm is the comm label of a sample: the process's, read from /proc,
// or, when that read failed (the process was exiting), the comm the kernel
// reported with the sample, rather than none.
func processComm(kernel string, p *proc.Process) string {
	if p != nil && p.Comm != "" {
		return p.Comm
	}
	return kernel
}

// wakerLocations puts the waker of an off-CPU block beneath its stack (leaf
// first: the blocked frames, "[woken by COMM]", the waker's frames), as
// offwaketime draws it, so that flame graphs show the waker's path at the
// root; a block that did not end in a wakeup gets "[not woken]". Nothing
// changes without --wakers.
func (c *collector) wakerLocations(locs []*profile.Location, w *tracer.Waker, l *pprof.Labels, refreshed map[uint32]bool) []*profile.Location {
	if !c.wakers {
		return locs
	}
	if w == nil {
		return append(locs, c.b.Pseudo(NotWoken))
	}
	l.WakerComm, l.WakerPID = w.Comm, int64(w.PID)
	locs = append(locs, c.b.Pseudo(WokenByPrefix+w.Comm+"]"))
	var p *proc.Process
	if w.PID != 0 {
		p = c.process(w.PID, refreshed)
	}
	return c.locations(locs, w.PID, p, stack{kernel: w.Kernel, user: w.User, kernErr: w.KernErr,
		userErr: w.UserErr, tables: w.UserTables, reason: w.UserReason}, refreshed)
}

// The pseudo-frames of --wakers.
const (
	WokenByPrefix = "[woken by "
	NotWoken      = "[not woken]"
)

// stack is one thread's stacks as the kernel took them.
type stack struct {
	kernel, user     []uint64
	kernErr, userErr int64
	tables           bool
	reason           unwind.Reason
	fpFallback       bool // walked with frame pointers: no tables yet
	onCPU            bool
}

// FPFallbackFrame is the root-end pseudo-frame of a user stack walked with
// frame pointers while tables were the method (the process's tables were not
// in the kernel yet): its frameless functions' callers may be missing.
const FPFallbackFrame = "[user stack walked with frame pointers: unwind tables not loaded yet]"

// UnmappedFrame is the root-end pseudo-frame of a user stack whose walk
// found no fault but some of whose frames lie in no mapping Ember knows of
// the process: an image it exec'd away from before Ember read it (a fork
// child sampled in its parent's code and read after its exec), or code
// unmapped since. Those frames cannot be named; the marker says so.
const UnmappedFrame = "[user frames outside the process's known mappings]"

// process returns the process of pid, read now if it was not known.
func (c *collector) process(pid uint32, refreshed map[uint32]bool) *proc.Process {
	p := c.procs.Get(int(pid))
	if p == nil && pid != 0 {
		p, _ = c.procs.Add(int(pid))
		refreshed[pid] = true
	}
	return p
}

// locations appends st's frames, leaf first (kernel, then user), with the
// pseudo-frames that say what was lost or cut.
func (c *collector) locations(locs []*profile.Location, pid uint32, p *proc.Process, st stack, refreshed map[uint32]bool) []*profile.Location {
	for i, pc := range st.kernel {
		if i > 0 {
			pc-- // a return address: look up the call
		}
		locs = append(locs, c.b.Location(c.kernelMapping(), pc))
	}
	// -EFAULT for an on-CPU kernel stack means the tick came in user mode.
	if st.kernErr < 0 && st.kernErr != tracer.StackNone && !(st.kernErr == tracer.StackFault && st.onCPU) {
		locs = append(locs, c.b.Pseudo(lostName("kernel", st.kernErr)))
	}
	p = imageOf(p, st.user)
	unmapped := false
	for i, pc := range st.user {
		if i > 0 {
			pc--
		}
		var m *proc.Mapping
		if p != nil {
			m = p.Find(pc)
			if m == nil && !refreshed[pid] {
				// Mapped after we read the maps (dlopen, JIT): read again.
				refreshed[pid] = true
				if np, err := c.procs.Add(int(pid)); err == nil {
					p = np
					m = p.Find(pc)
				}
			}
		}
		unmapped = unmapped || m == nil
		locs = append(locs, c.b.Location(c.userMapping(pid, m), pc))
	}
	if st.userErr < 0 && st.userErr != tracer.StackNone {
		locs = append(locs, c.b.Pseudo(lostName("user", st.userErr)))
	} else if st.tables && st.reason != unwind.ReasonComplete {
		locs = append(locs, c.b.Pseudo(truncatedName(st.reason)))
	} else if st.fpFallback {
		locs = append(locs, c.b.Pseudo(FPFallbackFrame))
	} else if unmapped {
		c.unmapped++
		locs = append(locs, c.b.Pseudo(UnmappedFrame))
	}
	return locs
}

// imageOf returns the image of p that user, a user stack (leaf first),
// was taken in: p's current one, or the one before its last exec
// (p.PreExec) when that one maps every frame and the current one does not.
// A fork child sampled before it exec'd (a shell's, running the shell's
// code) is built after the exec, and its addresses would otherwise be read
// against the new image's mappings: unnamed frames, with no marker.
func imageOf(p *proc.Process, user []uint64) *proc.Process {
	if p == nil || p.PreExec == nil || len(user) == 0 || mapsAll(p, user) {
		return p
	}
	if mapsAll(p.PreExec, user) {
		return p.PreExec
	}
	return p
}

// mapsAll reports whether p maps every frame of user.
func mapsAll(p *proc.Process, user []uint64) bool {
	for i, pc := range user {
		if i > 0 {
			pc--
		}
		if p.Find(pc) == nil {
			return false
		}
	}
	return true
}

func lostName(which string, code int64) string {
	return fmt.Sprintf("[%s stack lost: %s]", which, tracer.StackLostReason(code))
}

// truncatedName is the root-end pseudo-frame of a user stack whose table
// walk stopped early: the frames above it are missing, and it says why.
func truncatedName(r unwind.Reason) string {
	why := map[unwind.Reason]string{
		unwind.ReasonNoMapping:   "code outside known mappings",
		unwind.ReasonNoRow:       "no CFI row",
		unwind.ReasonUnsupported: "unsupported CFI rule",
		unwind.ReasonReadFailed:  "stack unreadable",
		unwind.ReasonBadFrame:    "bad frame",
		unwind.ReasonMaxFrames:   "too deep",
		unwind.ReasonBadTable:    "bad table",
	}[r]
	if why == "" {
		why = r.String()
	}
	return "[user stack truncated: " + why + "]"
}

func (c *collector) kernelMapping() *profile.Mapping {
	if c.kernel == nil {
		c.kernel = c.b.Mapping(pprof.MappingKey{PID: 0, Start: 0, Limit: ^uint64(0)}, func(m *profile.Mapping) {
			m.File = pprof.KernelFile
		})
	}
	return c.kernel
}

// userMapping returns the profile mapping of m in process pid; m nil means
// an address no known mapping covers.
func (c *collector) userMapping(pid uint32, m *proc.Mapping) *profile.Mapping {
	if m == nil {
		return nil
	}
	return c.b.Mapping(pprof.MappingKey{PID: pid, Start: m.Start, Limit: m.Limit}, func(pm *profile.Mapping) {
		pm.Offset = m.Offset
		pm.File = strings.TrimSuffix(m.Path, " (deleted)")
		src := mappingSource{pid: int(pid), m: *m}
		if m.Inode == 0 && (m.Path == "" || strings.HasPrefix(m.Path, "[anon")) {
			// JIT code: named by the runtime, if at all, in its jitdump
			// file or perf map (proc.Table.OpenJIT), in its root. A file
			// that is there but refused (a symlink, a FIFO) names the
			// mapping all the same, so the symbolizer reports why its
			// frames have no names.
			var err error
			path, held := c.jitPaths[int(pid)]
			if !held {
				var f *os.File
				if f, path, err = c.procs.OpenJIT(int(pid)); err == nil {
					c.jitMaps[int(pid)] = f
					c.jitPaths[int(pid)] = path
				}
			}
			if path != "" {
				pm.File = fmt.Sprintf("/proc/%d/root%s", pid, path)
				src.jit = true
			}
		}
		c.files[pm] = src
	})
}

// open opens the file behind a profile mapping for the symbolizer.
func (c *collector) open(pm *profile.Mapping) (*os.File, error) {
	if pm.File == pprof.KernelFile {
		return nil, fmt.Errorf("kernel mapping has no file")
	}
	src, ok := c.files[pm]
	switch {
	case !ok:
		return nil, fmt.Errorf("%s: no process is known to map it", pm.File)
	case src.jit:
		if f, ok := c.jitMaps[src.pid]; ok {
			// A file of its own (offset and all) on the held one, which
			// the runtime may have appended to since, and which outlives
			// the process.
			return os.Open(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
		}
		f, _, err := c.procs.OpenJIT(src.pid)
		return f, err
	case src.m.Inode == 0:
		return nil, fmt.Errorf("%s: an anonymous mapping of process %d: %w", pm.File, src.pid, fs.ErrNotExist)
	}
	// Held since the process was seen, else opened now, safely, in its
	// root (proc.Table.Open: the one opener of a process's files).
	return c.procs.Open(src.pid, &src.m)
}

// object gives the symbolizer the object file behind a profile mapping as
// the process table holds it (proc.Table.Object): opened and parsed once
// for the unwind-table builder and the symbolizer alike.
func (c *collector) object(pm *profile.Mapping) (*objfile.File, error) {
	src, ok := c.files[pm]
	if !ok || src.jit || src.m.Inode == 0 {
		return nil, fmt.Errorf("%s: not a mapped object file", pm.File)
	}
	return c.procs.Object(src.pid, &src.m)
}
