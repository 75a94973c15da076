// Package synth builds synthetic pprof profiles shaped like Ember's, for the
// tests and benchmarks of the export packages: real Mappings, Locations with
// inlined frames, Functions with file names, kernel frames and labels.
package synth

import (
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/google/pprof/profile"
)

// Period is the sampling period of the synthetic on-CPU profiles: 99 Hz.
const Period = int64(1_000_000_000) / 99

// builder hands out Mappings, Functions and Locations of a profile.
type builder struct {
	p     *profile.Profile
	funcs map[string]*profile.Function
	locs  map[uint64]*profile.Location
}

func newBuilder(types ...string) *builder {
	p := &profile.Profile{
		PeriodType:    &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:        Period,
		TimeNanos:     1_700_000_000_000_000_000,
		DurationNanos: 10e9,
	}
	for _, t := range types {
		unit := "nanoseconds"
		if t == "samples" {
			unit = "count"
		}
		p.SampleType = append(p.SampleType, &profile.ValueType{Type: t, Unit: unit})
	}
	p.Mapping = []*profile.Mapping{
		{ID: 1, Start: 0x400000, Limit: 0x500000, File: "/usr/bin/app", BuildID: "a1b2c3", HasFunctions: true},
		{ID: 2, Start: 0x7f0000000000, Limit: 0x7f0000200000, Offset: 0x28000, File: "/usr/lib/x86_64-linux-gnu/libc.so.6", BuildID: "c0ffee", HasFunctions: true},
		{ID: 3, Start: 0xffffffff81000000, Limit: 0xffffffff83000000, File: "[kernel.kallsyms]", HasFunctions: true},
		{ID: 4, Start: 0x7f1000000000, Limit: 0x7f1000100000, File: "/opt/lib/libstripped.so"},
	}
	return &builder{p: p, funcs: map[string]*profile.Function{}, locs: map[uint64]*profile.Location{}}
}

func (b *builder) fn(name, file string) *profile.Function {
	if f, ok := b.funcs[name]; ok {
		return f
	}
	f := &profile.Function{ID: uint64(len(b.p.Function) + 1), Name: name, SystemName: name, Filename: file, StartLine: 1}
	b.p.Function = append(b.p.Function, f)
	b.funcs[name] = f
	return f
}

// loc returns the location at addr in mapping m (1-based) whose lines are
// given innermost first as name, file, line triples.
func (b *builder) loc(m int, addr uint64, lines ...any) *profile.Location {
	if l, ok := b.locs[addr]; ok {
		return l
	}
	l := &profile.Location{ID: uint64(len(b.p.Location) + 1), Mapping: b.p.Mapping[m-1], Address: addr}
	for i := 0; i+2 < len(lines); i += 3 {
		l.Line = append(l.Line, profile.Line{
			Function: b.fn(lines[i].(string), lines[i+1].(string)),
			Line:     int64(lines[i+2].(int)),
		})
	}
	b.p.Location = append(b.p.Location, l)
	b.locs[addr] = l
	return l
}

func (b *builder) sample(comm string, pid int64, values []int64, locs ...*profile.Location) {
	b.p.Sample = append(b.p.Sample, &profile.Sample{
		Location: locs, // leaf first
		Value:    values,
		Label:    map[string][]string{"comm": {comm}, "thread": {comm}},
		NumLabel: map[string][]int64{"pid": {pid}, "tid": {pid}},
	})
}

// Known returns a small on-CPU profile (samples/count, cpu/nanoseconds) of
// process "app" with known stacks, leaf first as pprof stores them:
//
//	main;run;compute;helper (helper inlined into compute)   5 samples
//	main;run;compute                                        3 samples
//	main;run;read;entry_SYSCALL_64;ksys_read;vfs_read       2 samples (kernel below read)
//	main;libstripped.so+0x1234                              1 sample (unsymbolized)
//	main;run;compute;helper from a second process "other"   4 samples
func Known() *profile.Profile {
	b := newBuilder("samples", "cpu")
	main := b.loc(1, 0x401000, "main", "app.c", 30)
	run := b.loc(1, 0x401100, "run", "app.c", 20)
	// One location, two lines: helper inlined into compute; innermost first.
	inl := b.loc(1, 0x401200, "helper", "helper.h", 7, "compute", "app.c", 12)
	compute := b.loc(1, 0x401210, "compute", "app.c", 14)
	read := b.loc(2, 0x7f0000001000, "read", "read.c", 26)
	entry := b.loc(3, 0xffffffff81c00010, "entry_SYSCALL_64", "", 0)
	ksys := b.loc(3, 0xffffffff81300020, "ksys_read", "fs/read_write.c", 620)
	vfs := b.loc(3, 0xffffffff81300100, "vfs_read", "fs/read_write.c", 470)
	stripped := b.loc(4, 0x7f1000001234)
	v := func(n int64) []int64 { return []int64{n, n * Period} }
	b.sample("app", 100, v(5), inl, run, main)
	b.sample("app", 100, v(3), compute, run, main)
	b.sample("app", 100, v(2), vfs, ksys, entry, read, run, main)
	b.sample("app", 101, v(1), stripped, main)
	b.sample("other", 200, v(4), inl, run, main)
	return b.p
}

// Wall returns a wall-mode profile (cpu, offcpu, wall in nanoseconds) of one
// process: compute runs on CPU for 6 ms, and read blocks in the kernel's
// schedule for 30 ms.
func Wall() *profile.Profile {
	b := newBuilder("cpu", "offcpu", "wall")
	main := b.loc(1, 0x401000, "main", "app.c", 30)
	compute := b.loc(1, 0x401210, "compute", "app.c", 14)
	read := b.loc(2, 0x7f0000001000, "read", "read.c", 26)
	sched := b.loc(3, 0xffffffff81a00000, "schedule", "kernel/sched/core.c", 6800)
	b.sample("app", 100, []int64{6e6, 0, 6e6}, compute, main)
	b.sample("app", 100, []int64{0, 30e6, 30e6}, sched, read, main)
	b.p.Sample[1].Label["state"] = []string{"S"}
	return b.p
}

// Generate returns an on-CPU profile with n distinct stacks of depth 20 to 40,
// built as programs look: stacks share prefixes (a stack starts as a prefix
// of an earlier one and adds its own tail, mostly a few frames), one
// location in five has an inlined frame, and one stack in five ends in
// kernel frames.
func Generate(n int, seed uint64) *profile.Profile {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := newBuilder("samples", "cpu")
	const nfuncs = 5000
	userLoc := func(f int) *profile.Location {
		name := "pkg" + strconv.Itoa(f%97) + ".func" + strconv.Itoa(f)
		file := "src/pkg" + strconv.Itoa(f%97) + "/file" + strconv.Itoa(f%13) + ".go"
		addr := 0x400000 + uint64(f)*16
		if f%5 == 0 {
			return b.loc(1, addr, name+".inlined", file, 10+f%50, name, file, 100+f%200)
		}
		return b.loc(1, addr, name, file, 100+f%200)
	}
	kernLoc := func(k int) *profile.Location {
		return b.loc(3, 0xffffffff81000000+uint64(k)*32, "kfunc_"+strconv.Itoa(k), "kernel/k.c", 100+k)
	}
	seen := make(map[string]bool, n)
	var prev [][]int // earlier stacks, root first, as function numbers
	for len(prev) < n {
		depth := 20 + r.IntN(21)
		var st []int
		if len(prev) > 0 {
			// Share a prefix with an earlier stack and add a tail of
			// its own, mostly short (a few leaf frames), sometimes
			// long (a branch near the root).
			base := prev[r.IntN(len(prev))]
			tail := 1 + r.IntN(1+r.IntN(depth-1))
			st = append(st, base[:min(len(base), depth-tail)]...)
		}
		for len(st) < depth {
			st = append(st, r.IntN(nfuncs))
		}
		key := fmt.Sprint(st)
		if seen[key] {
			continue
		}
		seen[key] = true
		prev = append(prev, st)
		locs := make([]*profile.Location, 0, depth+5)
		if r.IntN(5) == 0 {
			for k := 2 + r.IntN(4); k > 0; k-- {
				locs = append(locs, kernLoc(r.IntN(300)))
			}
		}
		for i := len(st) - 1; i >= 0; i-- {
			locs = append(locs, userLoc(st[i]))
		}
		c := int64(1 + r.IntN(100))
		b.sample("app", 100, []int64{c, c * Period}, locs...)
	}
	return b.p
}
