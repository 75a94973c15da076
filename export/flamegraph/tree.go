package flamegraph

import (
	"cmp"
	"math"
	"slices"
	"strings"

	"github.com/emberprof/ember/export/stacks"
	"github.com/google/pprof/profile"
)

// A Tree is a flame graph's call tree, its nodes in preorder: node 0 is the
// root ("all"), each node is followed by its subtree, and siblings are in
// order of frame name. Values are inclusive (a node's value includes its
// children's).
type Tree struct {
	Frames []stacks.Frame // frame table; Frames[Frame[0]] is the root, "all"
	Frame  []int32        // per node: index into Frames
	Depth  []int32        // per node: 0 for the root
	Line   []int64        // per node: source line, 0 when unknown or several
	Values [][]int64      // Values[c][node]: inclusive value of column c
}

// Len returns the number of nodes.
func (t *Tree) Len() int { return len(t.Frame) }

// End returns the index just past node i's subtree.
func (t *Tree) End(i int) int {
	j := i + 1
	for j < len(t.Depth) && t.Depth[j] > t.Depth[i] {
		j++
	}
	return j
}

// MaxDepth returns the depth of the deepest node.
func (t *Tree) MaxDepth() int {
	var m int32
	for _, d := range t.Depth {
		m = max(m, d)
	}
	return int(m)
}

// A column is one value per node of a tree: sample type index of set,
// multiplied by scale.
type column struct {
	set   *stacks.Set
	index int
	scale float64 // 1 unless a diff normalises the base
}

// rootFrame is the frame of the root node.
var rootFrame = stacks.Frame{Name: "all", Kind: stacks.Process}

// NewTree returns the tree of set with one column per sample type.
func NewTree(set *stacks.Set) *Tree {
	cols := make([]column, len(set.Types))
	for i := range cols {
		cols[i] = column{set: set, index: i, scale: 1}
	}
	return build(cols)
}

// build merges the stacks of the columns' sets into a tree. It sorts the
// stacks by frame, so that each stack shares its prefix with the one before
// it and the tree comes out in preorder with siblings in order, as
// flamegraph.pl's flow() does with sorted folded lines: no map of children,
// no second pass.
func build(cols []column) *Tree {
	frames := []stacks.Frame{rootFrame}
	frameID := map[stacks.Frame]int32{rootFrame: 0}

	// One entry per stack with a value in some column.
	type entry struct {
		frames []int32 // into frames, root first
		lines  []int64
		add    []int64 // value per column
	}
	var entries []entry
	var sets []*stacks.Set
	for _, c := range cols {
		if !slices.Contains(sets, c.set) {
			sets = append(sets, c.set)
		}
	}
	for _, set := range sets {
		remap := make([]int32, len(set.Frames))
		for i, f := range set.Frames {
			id, ok := frameID[f]
			if !ok {
				id = int32(len(frames))
				frames = append(frames, f)
				frameID[f] = id
			}
			remap[i] = id
		}
		adds := make([]int64, len(cols)*len(set.Stacks))
		for k, st := range set.Stacks {
			add := adds[k*len(cols) : (k+1)*len(cols) : (k+1)*len(cols)]
			nonzero := false
			for c, col := range cols {
				if col.set == set {
					add[c] = scaled(st.Values[col.index], col.scale)
					nonzero = nonzero || add[c] != 0
				}
			}
			if !nonzero {
				continue
			}
			ids := make([]int32, len(st.Frames))
			for j, f := range st.Frames {
				ids[j] = remap[f]
			}
			entries = append(entries, entry{ids, st.Lines, add})
		}
	}

	// Rank frames by name, then file and kind: the order of siblings.
	order := make([]int32, len(frames))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		fa, fb := &frames[a], &frames[b]
		return cmp.Or(strings.Compare(fa.Name, fb.Name), strings.Compare(fa.File, fb.File), cmp.Compare(fa.Kind, fb.Kind))
	})
	rank := make([]int32, len(frames))
	for r, f := range order {
		rank[f] = int32(r)
	}
	slices.SortFunc(entries, func(a, b entry) int {
		for i := range min(len(a.frames), len(b.frames)) {
			if c := cmp.Compare(rank[a.frames[i]], rank[b.frames[i]]); c != 0 {
				return c
			}
		}
		return cmp.Compare(len(a.frames), len(b.frames)) // a prefix comes first
	})

	t := &Tree{
		Frames: frames,
		Frame:  []int32{0},
		Depth:  []int32{0},
		Line:   []int64{0},
		Values: make([][]int64, len(cols)),
	}
	for c := range cols {
		t.Values[c] = []int64{0}
	}
	path := []int32{0} // path[d]: the node at depth d of the previous stack
	var prev []int32
	for _, e := range entries {
		k := 0
		for k < len(prev) && k < len(e.frames) && prev[k] == e.frames[k] {
			k++
		}
		path = path[:k+1]
		for j := k; j < len(e.frames); j++ {
			n := int32(len(t.Frame))
			t.Frame = append(t.Frame, e.frames[j])
			t.Depth = append(t.Depth, int32(j+1))
			t.Line = append(t.Line, e.lines[j])
			for c := range cols {
				t.Values[c] = append(t.Values[c], 0)
			}
			path = append(path, n)
		}
		for j := 0; j < k; j++ { // nodes seen before: at one line or several
			if n := path[j+1]; t.Line[n] != e.lines[j] {
				t.Line[n] = 0
			}
		}
		for c, v := range e.add {
			if v != 0 {
				vals := t.Values[c]
				for _, n := range path {
					vals[n] += v
				}
			}
		}
		prev = e.frames
	}
	return t
}

func scaled(v int64, scale float64) int64 {
	if scale == 1 {
		return v
	}
	return int64(math.Round(float64(v) * scale))
}

// colour classes of a sample type: how frames of that type are coloured.
const (
	classCPU  = "cpu"  // warm colours
	classOff  = "off"  // blues
	classWall = "wall" // warm or blue by the node's share of off-CPU time
)

// typeClass returns the colour class of a sample type.
func typeClass(vt *profile.ValueType) string {
	t := strings.ToLower(vt.Type)
	switch {
	case strings.Contains(t, "off"), strings.Contains(t, "block"), strings.Contains(t, "wait"):
		return classOff
	case strings.Contains(t, "wall"):
		return classWall
	}
	return classCPU
}

// wallColumns returns the cpu and off-CPU columns that split a wall type,
// or -1, -1.
func wallColumns(types []*profile.ValueType) (cpu, off int) {
	cpu, off = -1, -1
	for i, vt := range types {
		switch {
		case vt.Type == "cpu":
			cpu = i
		case typeClass(vt) == classOff && off == -1:
			off = i
		}
	}
	if cpu == -1 || off == -1 {
		return -1, -1
	}
	return cpu, off
}
