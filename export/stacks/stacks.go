package stacks

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/google/pprof/profile"
)

// ErrSampleType is returned when a profile has no sample type of the
// requested name.
var ErrSampleType = errors.New("no such sample type")

// ErrEmpty is returned for a profile without sample types.
var ErrEmpty = errors.New("profile has no sample types")

// Kind tells what a frame stands for; pictures colour kinds differently.
type Kind uint8

const (
	User    Kind = iota // a function in user space
	Kernel              // a kernel function (vmlinux or a module)
	Process             // the synthetic root frame named after the process (comm label)
)

func (k Kind) String() string {
	switch k {
	case User:
		return "user"
	case Kernel:
		return "kernel"
	case Process:
		return "process"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// A Frame is one function in a stack.
type Frame struct {
	Name string // function name, or module+offset when unsymbolized
	File string // source file, "" when unknown
	Kind Kind
}

// A Stack is one distinct call stack with its values.
type Stack struct {
	Frames []int32 // indices into Set.Frames, root first
	Lines  []int64 // source line of each frame, 0 when unknown
	Values []int64 // one value per sample type, as in Set.Types
}

// A Set is the distinct stacks of a profile.
type Set struct {
	Types  []*profile.ValueType // the profile's sample types
	Frames []Frame              // frame table, each frame once
	Stacks []Stack              // distinct stacks, in first-seen order
	// Default is the index of the sample type to show when none is asked for:
	// the profile's DefaultSampleType if set, else the last type (as pprof
	// does), which for Ember is cpu, offcpu or wall.
	Default int
}

// Options control FromProfile.
type Options struct {
	// ProcessRoot adds the sample's "comm" label, where present, as the root
	// frame of its stack, as perf script and stackcollapse-perf.pl do.
	ProcessRoot bool
	// GroupBy names a label whose value, where present, roots each stack
	// (above the process) as a frame "LABEL: VALUE", so that the graph
	// groups by it: "cause" groups off-CPU time by why it was spent.
	GroupBy string
}

// GroupFrame is the name of the root frame GroupBy gives a stack.
func GroupFrame(label, value string) string { return label + ": " + value }

// FromProfile returns the distinct stacks of p. Samples with equal stacks
// (and equal process, with ProcessRoot) are merged by adding their values.
func FromProfile(p *profile.Profile, opts Options) (s *Set, err error) {
	if p == nil {
		return nil, errors.New("stacks: nil profile")
	}
	if len(p.SampleType) == 0 {
		return nil, ErrEmpty
	}
	defer func() {
		// A malformed profile (nil pointers where pprof's parser would
		// have linked them) must cost an error, not a crash.
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("stacks: malformed profile: %v", r)
		}
	}()
	b := builder{
		set:    &Set{Types: p.SampleType, Default: defaultIndex(p)},
		frames: make(map[Frame]int32),
		stacks: make(map[string]int),
		locs:   make(map[*profile.Location]locFrames),
	}
	for _, smp := range p.Sample {
		b.add(smp, opts)
	}
	return b.set, nil
}

type builder struct {
	set    *Set
	frames map[Frame]int32
	stacks map[string]int // stack key -> index in set.Stacks
	locs   map[*profile.Location]locFrames
	ids    []int32
	lines  []int64
	key    []byte
}

func (b *builder) frame(f Frame) int32 {
	id, ok := b.frames[f]
	if !ok {
		id = int32(len(b.set.Frames))
		b.set.Frames = append(b.set.Frames, f)
		b.frames[f] = id
	}
	return id
}

// locFrames are the frames of one location, root first.
type locFrames struct {
	ids   []int32
	lines []int64
}

// location returns loc's frames, computed once per location: within a
// location the last line is the outermost (caller) function.
func (b *builder) location(loc *profile.Location) locFrames {
	if lf, ok := b.locs[loc]; ok {
		return lf
	}
	var lf locFrames
	kind := locationKind(loc)
	if len(loc.Line) == 0 {
		lf.ids = append(lf.ids, b.frame(Frame{Name: unsymbolized(loc), Kind: kind}))
		lf.lines = append(lf.lines, 0)
	}
	for j := len(loc.Line) - 1; j >= 0; j-- {
		ln := loc.Line[j]
		f := Frame{Kind: kind}
		if ln.Function != nil {
			f.Name, f.File = ln.Function.Name, ln.Function.Filename
		}
		if f.Name == "" {
			f.Name = unsymbolized(loc)
		}
		lf.ids = append(lf.ids, b.frame(f))
		lf.lines = append(lf.lines, ln.Line)
	}
	b.locs[loc] = lf
	return lf
}

func (b *builder) add(smp *profile.Sample, opts Options) {
	n := len(b.set.Types)
	if len(smp.Value) != n {
		panic(fmt.Sprintf("sample has %d values, profile has %d sample types", len(smp.Value), n))
	}
	b.ids, b.lines = b.ids[:0], b.lines[:0]
	if opts.GroupBy != "" {
		if v := smp.Label[opts.GroupBy]; len(v) > 0 && v[0] != "" {
			b.ids = append(b.ids, b.frame(Frame{Name: GroupFrame(opts.GroupBy, v[0]), Kind: Process}))
			b.lines = append(b.lines, 0)
		}
	}
	if opts.ProcessRoot {
		if comm := smp.Label["comm"]; len(comm) > 0 && comm[0] != "" {
			b.ids = append(b.ids, b.frame(Frame{Name: comm[0], Kind: Process}))
			b.lines = append(b.lines, 0)
		}
	}
	// Root first: the last location is the root.
	for i := len(smp.Location) - 1; i >= 0; i-- {
		lf := b.location(smp.Location[i])
		b.ids = append(b.ids, lf.ids...)
		b.lines = append(b.lines, lf.lines...)
	}
	b.key = b.key[:0]
	for i, id := range b.ids {
		b.key = strconv.AppendInt(b.key, int64(id), 36)
		b.key = append(b.key, ':')
		b.key = strconv.AppendInt(b.key, b.lines[i], 36)
		b.key = append(b.key, ';')
	}
	if i, ok := b.stacks[string(b.key)]; ok {
		v := b.set.Stacks[i].Values
		for k := range v {
			v[k] += smp.Value[k]
		}
		return
	}
	b.stacks[string(b.key)] = len(b.set.Stacks)
	b.set.Stacks = append(b.set.Stacks, Stack{
		Frames: append([]int32(nil), b.ids...),
		Lines:  append([]int64(nil), b.lines...),
		Values: append([]int64(nil), smp.Value...),
	})
}

// locationKind tells kernel frames from user frames. Kernel locations are
// those in a mapping named like perf names the kernel ("[kernel.kallsyms]",
// "[vmlinux]", "vmlinux"), in a kernel module (".ko"), or, without a mapping,
// at an address in the upper half of the x86-64/arm64 address space.
func locationKind(loc *profile.Location) Kind {
	if m := loc.Mapping; m != nil {
		if IsKernelFile(m.File) {
			return Kernel
		}
		if m.File != "" {
			return User
		}
	}
	if loc.Address >= 0xffff800000000000 {
		return Kernel
	}
	return User
}

// IsKernelFile reports whether a mapping file name stands for the kernel or
// one of its modules.
func IsKernelFile(file string) bool {
	switch {
	case strings.HasPrefix(file, "[kernel"), file == "[vmlinux]", path.Base(file) == "vmlinux":
		return true
	case strings.HasSuffix(file, ".ko"), strings.HasSuffix(file, ".ko.xz"), strings.HasSuffix(file, ".ko.zst"):
		return true
	}
	return false
}

// unsymbolized names a location that has no function: the mapping's base
// name and the file offset ("libc.so.6+0x2a3f0"), as perf does, or the bare
// address.
func unsymbolized(loc *profile.Location) string {
	if m := loc.Mapping; m != nil && m.File != "" && loc.Address >= m.Start {
		return path.Base(m.File) + "+0x" + strconv.FormatUint(loc.Address-m.Start+m.Offset, 16)
	}
	return "0x" + strconv.FormatUint(loc.Address, 16)
}

func defaultIndex(p *profile.Profile) int {
	if p.DefaultSampleType != "" {
		for i, t := range p.SampleType {
			if t.Type == p.DefaultSampleType {
				return i
			}
		}
	}
	return len(p.SampleType) - 1
}

// Index returns the index of the sample type named name: a type ("cpu"), a
// type and unit ("cpu/nanoseconds") or a decimal index. The empty name
// selects s.Default.
func (s *Set) Index(name string) (int, error) {
	return typeIndex(s.Types, s.Default, name)
}

// SampleIndex is Set.Index for a profile, without building its stacks.
func SampleIndex(p *profile.Profile, name string) (int, error) {
	if len(p.SampleType) == 0 {
		return 0, ErrEmpty
	}
	return typeIndex(p.SampleType, defaultIndex(p), name)
}

func typeIndex(types []*profile.ValueType, def int, name string) (int, error) {
	if name == "" {
		return def, nil
	}
	for i, t := range types {
		if t.Type == name || t.Type+"/"+t.Unit == name {
			return i, nil
		}
	}
	if i, err := strconv.Atoi(name); err == nil && i >= 0 && i < len(types) {
		return i, nil
	}
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = t.Type + "/" + t.Unit
	}
	return 0, fmt.Errorf("%w %q (the profile has %s)", ErrSampleType, name, strings.Join(names, ", "))
}

// Total returns the sum of sample type i over all stacks.
func (s *Set) Total(i int) int64 {
	var t int64
	for _, st := range s.Stacks {
		t += st.Values[i]
	}
	return t
}
