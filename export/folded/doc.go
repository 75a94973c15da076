// Package folded writes profiles as Brendan Gregg's folded stacks: one line
// per distinct stack, frames root first separated by ";", a space and an
// integer count. It is the exchange format of flamegraph.pl, inferno and
// speedscope, and a diff-friendly text form of a profile.
package folded
