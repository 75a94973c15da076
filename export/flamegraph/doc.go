// Package flamegraph draws profiles as flame graphs: a static SVG in the
// conventions of Brendan Gregg's flamegraph.pl, and a self-contained,
// interactive HTML page (canvas drawing, zoom, search, tooltips, sample-type
// selector, flame or icicle layout) that works offline and stays fast on
// profiles with a hundred thousand distinct stacks. Differential graphs
// compare two profiles: widths by the new profile, red where it spends more,
// blue where less.
//
// Both forms draw a Tree: the stacks of a profile merged by function from the
// root, as flamegraph.pl merges folded stacks, children in name order.
package flamegraph
