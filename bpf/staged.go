package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// The table walker later: the verifier took about 280 ms of CPU on the
// table-walking on_cpu_sample (its bpf_loop body and the walk's branches;
// 6-10 ms since the walk's searches are global functions, unwind.bpf.h)
// and about 9 ms on on_cpu_sample_fp, and sampling cannot start before the
// program it runs is verified. With Config.TableSamplerLater, Load loads
// on_cpu_sample_fp in its place, with every map the table walker uses, so
// that sampling starts at once; LoadTableSampler then loads the walker on
// those same maps, and the caller moves its perf events to it. The samples
// taken meanwhile are frame-pointer walks in a tracer that walks with
// tables: they are counted and marked as such (unwind_fp_fallback), as the
// first samples of a process whose tables are not loaded yet were before
// stack copies.

// laterSampler holds what LoadTableSampler needs: the spec the first load
// came from, and the name of the deferred program.
type laterSampler struct {
	spec *ebpf.CollectionSpec
	name string
	opts ebpf.CollectionOptions
}

// deferring says cfg loads the table walker later.
func (cfg Config) deferring() bool { return cfg.TableSamplerLater && cfg.OnCPU && cfg.UnwindTables }

// deferTableSampler takes the table-walking on-CPU program out of spec,
// which spec() prepared with its frame-pointer variant beside it and every
// map either uses; it returns what LoadTableSampler needs, or nil where cfg
// does not ask for it.
func (cfg Config) deferTableSampler(spec *ebpf.CollectionSpec) (*laterSampler, error) {
	if !cfg.deferring() {
		return nil, nil
	}
	name := "on_cpu_sample"
	if spec.Programs[name] == nil || spec.Programs[name+"_fp"] == nil {
		return nil, fmt.Errorf("no %s and %s_fp in the embedded object", name, name)
	}
	later := &laterSampler{spec: copyPrograms(spec, map[string]bool{name: true}), name: name, opts: cfg.collectionOptions()}
	delete(spec.Programs, name)
	// The maps only the walker uses (the unwind tables' 25 MiB of rows,
	// the stack-copy ring) are created by LoadTableSampler: creating them
	// (allocating and zeroing their memory) is then off the path to the
	// first sample.
	pruneMaps(spec)
	return later, nil
}

// LoadTableSampler loads the table-walking on-CPU program that Load left
// for later (Config.TableSamplerLater) on the maps Load created, and
// returns it; the caller attaches it in place of Objects.OnCPUSample, which
// this then names it. The frame-pointer program stays loaded until Close,
// so that its run time is still accounted (ProgramStats). A refusal is a
// *LoadError, as from Load.
func (o *Objects) LoadTableSampler() (*ebpf.Program, error) {
	l := o.later
	if l == nil {
		return nil, fmt.Errorf("no on-CPU program was left for later")
	}
	spec := l.spec
	for name := range spec.Programs {
		if name != l.name {
			delete(spec.Programs, name)
		}
	}
	pruneMaps(spec)
	opts := l.opts
	opts.MapReplacements = make(map[string]*ebpf.Map, len(spec.Maps))
	var created []string // the walker's own maps, which the first load left out
	for name := range spec.Maps {
		if m := o.coll.Maps[name]; m != nil {
			opts.MapReplacements[name] = m
		} else {
			created = append(created, name)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		return nil, newLoadError(spec, err)
	}
	prog := coll.DetachProgram(l.name)
	for _, name := range created {
		o.coll.Maps[name] = coll.DetachMap(name)
	}
	coll.Close() // the clones of the first load's maps
	o.coll.Programs[l.name] = prog
	o.OnCPUSample = prog
	o.setUnwindMaps()
	o.later = nil
	return prog, nil
}

// TableSamplerLater says LoadTableSampler has a program to load.
func (o *Objects) TableSamplerLater() bool { return o.later != nil }
