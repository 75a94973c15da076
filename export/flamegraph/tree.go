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

// node is a tree node under construction.
type node struct {
	frame       int32
	line        int64 // -1 until a line is seen
	first, next int32 // first child, next sibling; -1 for none
}

func build(cols []column) *Tree {
	frames := []stacks.Frame{rootFrame}
	frameID := map[stacks.Frame]int32{rootFrame: 0}
	nodes := []node{{frame: 0, line: 0, first: -1, next: -1}}
	values := make([][]int64, len(cols))
	for c := range values {
		values[c] = []int64{0}
	}
	type edge struct{ parent, frame int32 }
	children := make(map[edge]int32)

	// Walk each distinct set once, adding the values of its columns.
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
		add := make([]int64, len(cols))
		for _, st := range set.Stacks {
			nonzero := false
			for c, col := range cols {
				add[c] = 0
				if col.set == set {
					add[c] = scaled(st.Values[col.index], col.scale)
					nonzero = nonzero || add[c] != 0
				}
			}
			if !nonzero {
				continue
			}
			cur := int32(0)
			for c := range cols {
				values[c][0] += add[c]
			}
			for k, f := range st.Frames {
				e := edge{cur, remap[f]}
				n, ok := children[e]
				if !ok {
					n = int32(len(nodes))
					nodes = append(nodes, node{frame: e.frame, line: -1, first: -1, next: nodes[cur].first})
					nodes[cur].first = n
					for c := range values {
						values[c] = append(values[c], 0)
					}
					children[e] = n
				}
				if ln := st.Lines[k]; nodes[n].line == -1 {
					nodes[n].line = ln
				} else if nodes[n].line != ln {
					nodes[n].line = 0
				}
				for c := range cols {
					values[c][n] += add[c]
				}
				cur = n
			}
		}
	}
	return preorder(frames, nodes, values)
}

func scaled(v int64, scale float64) int64 {
	if scale == 1 {
		return v
	}
	return int64(math.Round(float64(v) * scale))
}

// preorder lays the nodes out depth first, siblings by frame name.
func preorder(frames []stacks.Frame, nodes []node, values [][]int64) *Tree {
	n := len(nodes)
	t := &Tree{
		Frames: frames,
		Frame:  make([]int32, 0, n),
		Depth:  make([]int32, 0, n),
		Line:   make([]int64, 0, n),
		Values: make([][]int64, len(values)),
	}
	for c := range values {
		t.Values[c] = make([]int64, 0, n)
	}
	type item struct{ node, depth int32 }
	stack := []item{{0, 0}}
	var kids []int32
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		nd := &nodes[it.node]
		t.Frame = append(t.Frame, nd.frame)
		t.Depth = append(t.Depth, it.depth)
		t.Line = append(t.Line, max(nd.line, 0))
		for c := range values {
			t.Values[c] = append(t.Values[c], values[c][it.node])
		}
		kids = kids[:0]
		for k := nd.first; k != -1; k = nodes[k].next {
			kids = append(kids, k)
		}
		slices.SortFunc(kids, func(a, b int32) int {
			fa, fb := &frames[nodes[a].frame], &frames[nodes[b].frame]
			return cmp.Or(strings.Compare(fa.Name, fb.Name), strings.Compare(fa.File, fb.File), cmp.Compare(fa.Kind, fb.Kind))
		})
		// Push in reverse so that the first child is popped first.
		for k := len(kids) - 1; k >= 0; k-- {
			stack = append(stack, item{kids[k], it.depth + 1})
		}
	}
	return t
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
