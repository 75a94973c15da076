// Package pprof builds Ember's profiles in google/pprof's model
// (github.com/google/pprof/profile): the hand-off type between Ember's stages.
//
// A Builder deduplicates Mappings, Locations and samples as they are added, so
// that a profile of many drains stays as small as its distinct stacks. The
// sample types and labels follow docs/design.md: on-CPU samples/count and
// cpu/nanoseconds with period 1e9/Hz, off-CPU offcpu/nanoseconds, wall mode all
// of them plus wall/nanoseconds; labels pid, tid (numbers), comm, thread,
// state, cgroup (strings). Symbolization is a separate pass (package
// symbolize) that fills the Locations' Lines.
package pprof
