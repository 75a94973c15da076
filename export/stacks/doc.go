// Package stacks turns a pprof profile into root-first call stacks of named
// frames, the common input of folded stacks and flame graphs.
//
// A *profile.Profile stores each sample's stack leaf first, and within one
// Location the innermost inlined function first. Every picture of a profile
// (flamegraph.pl's folded lines, SVG and HTML flame graphs, differential
// graphs) wants the opposite order, one frame per function including the
// inlined ones, and samples with equal stacks merged. This package does that
// once, so that the writers agree on frame names, on which frames are kernel
// frames and on which sample type a name such as "cpu" selects.
package stacks
