package flamegraph

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/emberprof/ember/export/folded"
	"github.com/emberprof/ember/export/internal/synth"
	"github.com/emberprof/ember/export/stacks"
)

// foldTree writes the self values of column c of a tree given as preorder
// arrays in folded form, sorted, leaving out the root: what folded.WriteSet
// writes for the same stacks, if the tree is right.
func foldTree(name func(node int) string, depth []int32, vals []int64) string {
	var lines []string
	var path []string
	for i := 0; i < len(depth); i++ {
		d := int(depth[i])
		path = append(path[:d], name(i))
		self := vals[i]
		for j := i + 1; j < len(depth) && depth[j] > depth[i]; j++ {
			if depth[j] == depth[i]+1 {
				self -= vals[j]
			}
		}
		if i > 0 && self > 0 {
			lines = append(lines, strings.Join(path[1:], ";")+" "+strconv.FormatInt(self, 10))
		}
	}
	slices.Sort(lines)
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

func foldedOf(t *testing.T, set *stacks.Set, col int) string {
	t.Helper()
	var buf bytes.Buffer
	if err := folded.WriteSet(&buf, set, col, false); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestTreeMatchesFolded(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func() (*stacks.Set, error)
	}{
		{"known", func() (*stacks.Set, error) {
			return stacks.FromProfile(synth.Known(), stacks.Options{ProcessRoot: true})
		}},
		{"wall", func() (*stacks.Set, error) { return stacks.FromProfile(synth.Wall(), stacks.Options{}) }},
		{"generated", func() (*stacks.Set, error) { return stacks.FromProfile(synth.Generate(3000, 7), stacks.Options{}) }},
	} {
		set, err := tc.set()
		if err != nil {
			t.Fatal(err)
		}
		tree := NewTree(set)
		name := func(i int) string { return folded.Name(tree.Frames[tree.Frame[i]], false) }
		for c := range set.Types {
			got := foldTree(name, tree.Depth, tree.Values[c])
			if want := foldedOf(t, set, c); got != want {
				t.Errorf("%s column %d: tree folds to\n%.2000s\nwant\n%.2000s", tc.name, c, got, want)
			}
			if tree.Values[c][0] != set.Total(c) {
				t.Errorf("%s: root value %d, total %d", tc.name, tree.Values[c][0], set.Total(c))
			}
		}
		// Siblings are in name order.
		for i := 0; i < tree.Len(); i++ {
			prev := ""
			for j := i + 1; j < tree.End(i); j = tree.End(j) {
				n := tree.Frames[tree.Frame[j]].Name
				if n < prev {
					t.Fatalf("%s: children of node %d out of order: %q after %q", tc.name, i, n, prev)
				}
				prev = n
			}
		}
	}
}

func TestTreeLines(t *testing.T) {
	set, err := stacks.FromProfile(synth.Known(), stacks.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tree := NewTree(set)
	lines := map[string]int64{}
	for i := 0; i < tree.Len(); i++ {
		lines[tree.Frames[tree.Frame[i]].Name] = tree.Line[i]
	}
	// helper is always at helper.h:7; compute is seen at lines 12 (where
	// helper is inlined) and 14, so its line is unknown (0).
	for name, want := range map[string]int64{"helper": 7, "compute": 0, "main": 30, "vfs_read": 470} {
		if lines[name] != want {
			t.Errorf("line of %s = %d, want %d", name, lines[name], want)
		}
	}
}
