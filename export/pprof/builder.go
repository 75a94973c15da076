package pprof

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// Mode picks the sample types of a profile.
type Mode int

const (
	ModeCPU    Mode = iota // samples/count, cpu/nanoseconds
	ModeOffCPU             // offcpu/nanoseconds, blocks/count
	ModeWall               // samples/count, cpu/nanoseconds, offcpu/nanoseconds, wall/nanoseconds
)

// ParseMode parses "cpu", "offcpu" or "wall".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "cpu", "":
		return ModeCPU, nil
	case "offcpu":
		return ModeOffCPU, nil
	case "wall":
		return ModeWall, nil
	}
	return 0, fmt.Errorf("unknown mode %q (want cpu, offcpu or wall)", s)
}

func (m Mode) String() string {
	return [...]string{"cpu", "offcpu", "wall"}[m]
}

// KernelFile is the Mapping.File of kernel frames, as perf names it, and
// the Frame.File package symbolize gives symbols of the core kernel (those
// of a module get "[module]"). It is defined here, once: every profile
// Ember builds names its kernel mapping so, and the symbolizer reads it.
const KernelFile = "[kernel.kallsyms]"

// Value is what one sample adds, before it is laid out by Mode.
type Value struct {
	Samples  int64 // on-CPU ticks
	OffCPUNS int64 // off-CPU nanoseconds
	Blocks   int64 // off-CPU blocks kept
}

// Labels of one sample.
type Labels struct {
	PID, TID       int64
	Comm, Thread   string
	State, Cgroup  string
	Service, Extra string
	// ContainerID and PodUID name the container and the Kubernetes pod of
	// the process; "" leaves them out. NSPID is the PID the process sees
	// in its PID namespace, given only where it differs from PID; 0 leaves
	// it out.
	ContainerID, PodUID string
	NSPID               int64
	// WakerComm names the thread that woke an off-CPU block (--wakers),
	// WakerPID its process; "" leaves both out.
	WakerComm string
	WakerPID  int64
}

// MappingKey identifies a mapping of one process, or the kernel (PID 0).
type MappingKey struct {
	PID          uint32
	Start, Limit uint64
}

// Builder accumulates samples into one profile.
type Builder struct {
	mode     Mode
	periodNS int64
	p        *profile.Profile

	mappings  map[MappingKey]*profile.Mapping
	locations map[locKey]*profile.Location
	samples   map[string]*profile.Sample
	labelSets map[string]labelSet
	pseudo    map[string]*profile.Location
	keyBuf    strings.Builder
}

// labelSet is the label maps of every sample with one set of labels (a
// thread in a state), shared: a map per sample was half the heap of an
// interval of thousands of short processes (the agent's soak), while the
// samples of one thread differ by their stacks only. Whoever changes the
// labels of one sample gives it maps of its own (annotateOffCPU).
type labelSet struct {
	id    string // the set's number, for the samples' keys
	label map[string][]string
	num   map[string][]int64
}

type locKey struct {
	mapping *profile.Mapping
	addr    uint64
}

// NewBuilder starts a profile. hz is the on-CPU sampling rate.
func NewBuilder(mode Mode, hz int, start time.Time) *Builder {
	period := int64(time.Second) / int64(max(hz, 1))
	p := &profile.Profile{TimeNanos: start.UnixNano()}
	cpuType := &profile.ValueType{Type: "cpu", Unit: "nanoseconds"}
	switch mode {
	case ModeCPU:
		p.SampleType = []*profile.ValueType{{Type: "samples", Unit: "count"}, cpuType}
		p.PeriodType, p.Period = cpuType, period
		p.DefaultSampleType = "cpu"
	case ModeOffCPU:
		p.SampleType = []*profile.ValueType{{Type: "offcpu", Unit: "nanoseconds"}, {Type: "blocks", Unit: "count"}}
		p.PeriodType, p.Period = &profile.ValueType{Type: "offcpu", Unit: "nanoseconds"}, 1
		p.DefaultSampleType = "offcpu"
	case ModeWall:
		p.SampleType = []*profile.ValueType{
			{Type: "samples", Unit: "count"}, cpuType,
			{Type: "offcpu", Unit: "nanoseconds"}, {Type: "wall", Unit: "nanoseconds"},
		}
		p.PeriodType, p.Period = &profile.ValueType{Type: "wall", Unit: "nanoseconds"}, period
		p.DefaultSampleType = "wall"
	}
	return &Builder{
		mode: mode, periodNS: period, p: p,
		mappings:  map[MappingKey]*profile.Mapping{},
		locations: map[locKey]*profile.Location{},
		samples:   map[string]*profile.Sample{},
		labelSets: map[string]labelSet{},
		pseudo:    map[string]*profile.Location{},
	}
}

// Mapping returns the profile's mapping for k, creating it with fill.
func (b *Builder) Mapping(k MappingKey, fill func(m *profile.Mapping)) *profile.Mapping {
	if m := b.mappings[k]; m != nil {
		return m
	}
	m := &profile.Mapping{ID: uint64(len(b.p.Mapping) + 1), Start: k.Start, Limit: k.Limit}
	fill(m)
	b.p.Mapping = append(b.p.Mapping, m)
	b.mappings[k] = m
	return m
}

// Location returns the location of addr in m (m may be nil for an address
// no mapping covers).
func (b *Builder) Location(m *profile.Mapping, addr uint64) *profile.Location {
	k := locKey{m, addr}
	if l := b.locations[k]; l != nil {
		return l
	}
	l := &profile.Location{ID: uint64(len(b.p.Location) + 1), Mapping: m, Address: addr}
	b.p.Location = append(b.p.Location, l)
	b.locations[k] = l
	return l
}

// Add adds one sample; locs is leaf first. Samples with the same stack and
// labels are merged. Samples with the same labels share their label maps
// (labelSet).
func (b *Builder) Add(locs []*profile.Location, v Value, l Labels) {
	vals := b.values(v)
	ls := b.labels(l)
	b.keyBuf.Reset()
	for _, loc := range locs {
		b.keyBuf.WriteString(strconv.FormatUint(loc.ID, 36))
		b.keyBuf.WriteByte(',')
	}
	b.keyBuf.WriteString(ls.id)
	key := b.keyBuf.String()
	if s := b.samples[key]; s != nil {
		for i := range vals {
			s.Value[i] += vals[i]
		}
		return
	}
	s := &profile.Sample{Location: slices.Clone(locs), Value: vals, Label: ls.label, NumLabel: ls.num}
	b.p.Sample = append(b.p.Sample, s)
	b.samples[key] = s
}

// labels returns the label set of l, made on its first sample.
func (b *Builder) labels(l Labels) labelSet {
	b.keyBuf.Reset()
	fmt.Fprintf(&b.keyBuf, "%d|%d|%s|%s|%s|%s|%s|%s|%s|%d|%s|%s|%d", l.PID, l.TID, l.Comm, l.Thread, l.State, l.Cgroup, l.Service, l.Extra, l.WakerComm, l.WakerPID, l.ContainerID, l.PodUID, l.NSPID)
	k := b.keyBuf.String()
	if ls, ok := b.labelSets[k]; ok {
		return ls
	}
	ls := labelSet{id: "|" + strconv.Itoa(len(b.labelSets)), label: map[string][]string{},
		num: map[string][]int64{"pid": {l.PID}, "tid": {l.TID}}}
	for name, val := range map[string]string{"comm": l.Comm, "thread": l.Thread, "state": l.State, "cgroup": l.Cgroup, "service_name": l.Service, "waker_comm": l.WakerComm,
		"container_id": l.ContainerID, "pod_uid": l.PodUID} {
		if val != "" {
			ls.label[name] = []string{val}
		}
	}
	if l.WakerComm != "" {
		ls.num["waker_pid"] = []int64{l.WakerPID}
	}
	if l.NSPID != 0 {
		ls.num["ns_pid"] = []int64{l.NSPID}
	}
	b.labelSets[k] = ls
	return ls
}

func (b *Builder) values(v Value) []int64 {
	cpu := v.Samples * b.periodNS
	switch b.mode {
	case ModeCPU:
		return []int64{v.Samples, cpu}
	case ModeOffCPU:
		return []int64{v.OffCPUNS, v.Blocks}
	default:
		return []int64{v.Samples, cpu, v.OffCPUNS, cpu + v.OffCPUNS}
	}
}

// Comment adds a line to the profile's comments (stack failure counts, ...).
func (b *Builder) Comment(format string, args ...any) {
	b.p.Comments = append(b.p.Comments, fmt.Sprintf(format, args...))
}

// Profile finishes the profile at end and returns it. The kernel's mapping
// goes last: pprof takes the first mapping for the main binary.
func (b *Builder) Profile(end time.Time) *profile.Profile {
	b.p.DurationNanos = end.UnixNano() - b.p.TimeNanos
	slices.SortStableFunc(b.p.Mapping, func(x, y *profile.Mapping) int {
		return cmpBool(x.File == KernelFile, y.File == KernelFile)
	})
	for i, m := range b.p.Mapping {
		m.ID = uint64(i + 1)
	}
	return b.p
}

// Len returns the number of distinct samples so far.
func (b *Builder) Len() int { return len(b.p.Sample) }

// Pseudo returns a location without an address that stands for something
// missing, such as a stack the kernel could not take, so that the loss shows
// in the profile where it happened instead of vanishing.
func (b *Builder) Pseudo(name string) *profile.Location {
	fk := name
	if l := b.pseudo[fk]; l != nil {
		return l
	}
	f := &profile.Function{ID: uint64(len(b.p.Function) + 1), Name: name, SystemName: name}
	b.p.Function = append(b.p.Function, f)
	l := &profile.Location{ID: uint64(len(b.p.Location) + 1), Line: []profile.Line{{Function: f}}}
	b.p.Location = append(b.p.Location, l)
	b.pseudo[fk] = l
	return l
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
