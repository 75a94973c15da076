package bpf

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// LoadError is the kernel refusing one of Ember's maps or programs: the
// verifier rejecting a program, a kfunc or helper it lacks, a map type it
// cannot create. Error is one sentence; Log holds the verifier's log, which
// is long and is for --log-level debug only.
type LoadError struct {
	Program string   // the program refused, if a program was
	Map     string   // the map refused, if a map was
	MapType string   // its type, as cilium/ebpf names it
	Reason  string   // one line: the verifier's last meaningful lines, or the error
	Log     []string // the verifier's log, when the verifier refused
	err     error
}

func (e *LoadError) Error() string {
	switch {
	case e.Program != "" && len(e.Log) > 0:
		return fmt.Sprintf("the kernel's verifier refused program %s: %s", e.Program, e.Reason)
	case e.Program != "":
		return fmt.Sprintf("the kernel refused program %s: %s", e.Program, e.Reason)
	case e.Map != "":
		return fmt.Sprintf("the kernel cannot create map %s (%s): %s", e.Map, e.MapType, e.Reason)
	}
	return e.Reason
}

func (e *LoadError) Unwrap() error { return e.err }

// Verifier reports whether the verifier refused a program (as opposed to a
// missing kfunc, map type or privilege).
func (e *LoadError) Verifier() bool { return len(e.Log) > 0 }

var (
	progPrefix = regexp.MustCompile(`(?:^|: )program (\w+): `)
	mapPrefix  = regexp.MustCompile(`(?:^|: )map (\w+): `)
)

// newLoadError names what ebpf.NewCollection's error is about. cilium/ebpf
// prefixes its errors with "program NAME: " or "map NAME: ".
func newLoadError(spec *ebpf.CollectionSpec, err error) error {
	le := &LoadError{err: err, Reason: err.Error()}
	msg := err.Error()
	if m := progPrefix.FindStringSubmatchIndex(msg); m != nil {
		le.Program = msg[m[2]:m[3]]
		le.Reason = msg[m[1]:]
	} else if m := mapPrefix.FindStringSubmatchIndex(msg); m != nil {
		le.Map = msg[m[2]:m[3]]
		le.Reason = msg[m[1]:]
		if ms := spec.Maps[le.Map]; ms != nil {
			le.MapType = ms.Type.String()
		}
	}
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		le.Log = verr.Log
		if r := VerifierReason(verr.Log); r != "" {
			le.Reason = r
		}
	}
	return le
}

// VerifierReason returns the verifier's last meaningful lines: the last
// run of message lines, leaving out the instruction dump, its register
// states and the closing statistics. "sleepable callback in a program that
// is not sleepable" followed by "kfunc X failed callback verification" is
// one reason in two lines; both are kept, joined by "; " (at most three).
func VerifierReason(log []string) string {
	var run []string
	for i := len(log) - 1; i >= 0 && len(run) < 3; i-- {
		l := strings.TrimSpace(log[i])
		if l == "" || boilerplate(l) || instruction(l) {
			if len(run) > 0 {
				break
			}
			continue
		}
		run = append(run, l)
	}
	for i, j := 0, len(run)-1; i < j; i, j = i+1, j-1 {
		run[i], run[j] = run[j], run[i]
	}
	return strings.Join(run, "; ")
}

// boilerplate lines close every log, accepted or not.
func boilerplate(l string) bool {
	for _, p := range []string{"processed ", "verification time", "stack depth", "-- END PROG LOAD LOG --", "mark_read"} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// instruction reports whether a verifier log line is part of the
// instruction dump: "12: (85) call ...", "12: R1=...", "; source @ file:1",
// "func 'x' arg1 has btf_id", "from 3 to 5: ...".
func instruction(l string) bool {
	if l[0] == ';' || strings.HasPrefix(l, "from ") || strings.HasPrefix(l, "func '") ||
		strings.HasPrefix(l, "last_idx") || strings.HasPrefix(l, "regs=") || strings.HasPrefix(l, "parent ") {
		return true
	}
	i := 0
	for i < len(l) && l[i] >= '0' && l[i] <= '9' {
		i++
	}
	return i > 0 && i < len(l) && l[i] == ':'
}

// pruneMaps drops the maps no program left in spec uses, so that a kernel
// lacking a map type (task storage before Linux 5.11) refuses only the
// programs that need it. The maps Objects always hands out stay, as do the
// data sections that hold the programs' variables.
func pruneMaps(spec *ebpf.CollectionSpec) {
	used := map[string]bool{
		"active_set": true, "counts0": true, "counts1": true, "stacks0": true, "stacks1": true,
		"offcpu_kstacks0": true, "offcpu_kstacks1": true, "hashed_ustacks0": true, "hashed_ustacks1": true,
		"stats": true, "pids": true, "known_pids": true, "events": true,
	}
	for _, p := range spec.Programs {
		for _, ins := range p.Instructions {
			if ref := ins.Reference(); ref != "" {
				used[ref] = true
			}
		}
	}
	for name := range spec.Maps {
		if !used[name] && !strings.HasPrefix(name, ".") {
			delete(spec.Maps, name)
		}
	}
}

// preallocRequired reports whether this kernel refuses perf_event programs
// that use hash maps allocated at run time (BPF_F_NO_PREALLOC): kernels
// before Linux 6.1, whose verifier also warns (WARN_ONCE, in dmesg) about
// tracing programs that do, and refuses them on PREEMPT_RT. Decided by
// loading such a program.
var preallocRequired = sync.OnceValue(func() bool {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1, Flags: unix.BPF_F_NO_PREALLOC})
	if err != nil {
		return false
	}
	defer m.Close()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.PerfEvent,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		return errors.Is(err, unix.EINVAL)
	}
	p.Close()
	return false
})

// preallocBytes bounds each hash map that preallocate turns preallocated:
// the kernel allocates every entry at creation.
const preallocBytes = 8 << 20

// preallocate makes every hash map in spec preallocated, with at most
// preallocBytes of values; a full map is counted where it fills (stats).
func preallocate(spec *ebpf.CollectionSpec) {
	for _, m := range spec.Maps {
		if (m.Type != ebpf.Hash && m.Type != ebpf.PerCPUHash) || m.Flags&unix.BPF_F_NO_PREALLOC == 0 {
			continue
		}
		m.Flags &^= unix.BPF_F_NO_PREALLOC
		if m.ValueSize > 0 {
			m.MaxEntries = min(m.MaxEntries, max(1024, preallocBytes/m.ValueSize))
		}
	}
}

// ProbeHook loads only the off-CPU programs of cfg's hook, every map at its
// smallest, and unloads them: whether the kernel takes the hook, at a small
// part of a full load's cost (no on-CPU or process programs to verify, no
// large maps to allocate), so that auto can try the hooks best first and
// load everything once. The error is a LoadError, as Load's.
func ProbeHook(cfg Config) error {
	if !cfg.OffCPU {
		return nil
	}
	spec, err := cfg.spec()
	if err != nil {
		return err
	}
	_, offSwitch, offSysExit, offWaking, _, _, _ := cfg.programs()
	for name := range spec.Programs {
		if name != offSwitch && name != offSysExit && name != offWaking {
			delete(spec.Programs, name)
		}
	}
	pruneMaps(spec)
	for name, m := range spec.Maps {
		switch m.Type {
		case ebpf.Array, ebpf.PerCPUArray, ebpf.Hash, ebpf.PerCPUHash, ebpf.LRUHash, ebpf.StackTrace:
			if !strings.HasPrefix(name, ".") {
				m.MaxEntries = 1
			}
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, cfg.collectionOptions())
	if err != nil {
		return newLoadError(spec, err)
	}
	coll.Close()
	return nil
}
