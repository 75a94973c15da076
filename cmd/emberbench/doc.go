// Command emberbench is `make bench`: it measures Ember beside the tools
// people would use instead (perf, bpftrace) in the same run, because shared
// machines are noisy and only ratios taken side by side hold.
//
// It builds its workloads from testdata, runs every configuration in
// alternating rounds, and prints one Markdown table (median, min and max of
// each measurement, its ratio to the baseline of the same round, and the
// project's goal), which it also writes to bench/results.md together with a
// description of the machine. It needs root.
//
//	go run ./cmd/emberbench -out bench/results.md
//
// `emberbench fold IN OUT` folds perf script output into stacks; the harness
// runs it as the last step of perf's pipeline. `emberbench hooks HOOKS`
// holds empty BPF programs on the hooks an off-CPU method needs, for the
// ping-pong's floor rows (hooks.go).
package main
