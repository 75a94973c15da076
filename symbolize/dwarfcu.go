package symbolize

import (
	"errors"
	"slices"
)

// compUnit is one DWARF compilation unit, parsed on first use.
type compUnit struct {
	info   *unitInfo
	parsed bool
	err    error
	files  []string
	seqs   []lineSeq
	funcs  []funcRange // top-level subprogram ranges, sorted by low
	nscope int
}

// lineSeq is one sequence of the line table: rows of increasing address
// covering [low, high).
type lineSeq struct {
	low, high uint64
	rows      []lineRow
}

type lineRow struct {
	off    uint32 // address - lineSeq.low
	file   uint32
	line   uint32
	column uint32
}

// scope is a subprogram or an inlined subroutine with code.
type scope struct {
	ranges   [][2]uint64
	die      uint64 // offset of the DIE, to resolve the name when first asked
	named    bool
	name     string // linkage name if any, else name; mangled
	callFile uint32 // for inlined subroutines: the call site in the parent
	callLine uint32
	callCol  uint32
	children []*scope
	kids     []funcRange // ranges of children, sorted, when there are many
	subtree  [2]uint64   // DIEs below a top-level subprogram, not yet read
}

type funcRange struct {
	low, high uint64
	s         *scope
}

func (u *compUnit) cost() int64 {
	c := int64(len(u.files)) * 64
	for _, s := range u.seqs {
		c += 40 + int64(len(s.rows))*16
	}
	return c + int64(len(u.funcs))*24 + int64(u.nscope)*112
}

// parseUnit reads the line table of u and the tree of subprograms and inlined
// subroutines in it.
func (ix *dwarfIndex) parseUnit(u *compUnit) error {
	if err := ix.loadAbbrevs(u.info); err != nil {
		return err
	}
	a, _, err := ix.readDIE(u.info, u.info.first)
	if err != nil {
		return err
	}
	var lerr error
	if a.hasStmtList {
		lerr = ix.readLineTable(u, a.stmtList, ix.str(u.info, a.compDir))
	}
	serr := ix.readScopes(u)
	return errors.Join(lerr, serr)
}

// readScopes walks the top level of the unit's DIEs with the scanner and
// records the subprograms that have code. The subtree of each (its inlined
// subroutines) is only read when an address first falls in it, and the
// children of types are skipped, by DW_AT_sibling where the compiler gives
// one and by a fast skip otherwise.
func (ix *dwarfIndex) readScopes(cu *compUnit) error {
	u := cu.info
	a, off, err := ix.readDIE(u, u.first)
	if err != nil || !a.children {
		return err
	}
	depth := 1
	for off < u.end && depth > 0 {
		die := off
		a, next, err := ix.nextDIE(u, off)
		if err != nil {
			return err
		}
		off = next
		switch a.tag {
		case 0:
			depth--
			continue
		case tagSubprogram:
			if rs, err := ix.dieRanges(u, &a); err == nil && len(rs) > 0 {
				sc := &scope{ranges: rs, die: die}
				for _, rg := range rs {
					cu.funcs = append(cu.funcs, funcRange{rg[0], rg[1], sc})
				}
				cu.nscope++
				if a.children {
					end, err := ix.subtreeEnd(u, next, a.sibling)
					if err != nil {
						return err
					}
					sc.subtree = [2]uint64{next, end}
					off = end
				}
				continue
			}
			fallthrough
		case tagStructureType, tagClassType, tagUnionType, tagEnumerationType, tagArrayType, tagSubroutineType:
			if a.children {
				end, err := ix.subtreeEnd(u, next, a.sibling)
				if err != nil {
					return err
				}
				off = end
			}
			continue
		}
		if a.children {
			depth++
		}
	}
	slices.SortStableFunc(cu.funcs, func(a, b funcRange) int { return cmpU64(a.low, b.low) })
	return nil
}

// subtreeEnd returns the offset after the children that start at off: the
// sibling if the DIE named one, else found by skipping DIEs.
func (ix *dwarfIndex) subtreeEnd(u *unitInfo, off, sibling uint64) (uint64, error) {
	if sibling > off && sibling <= u.end {
		return sibling, nil
	}
	for depth := 1; depth > 0; {
		next, children, null, err := ix.skipDIE(u, off)
		if err != nil {
			return 0, err
		}
		switch {
		case null:
			depth--
		case children:
			depth++
		}
		off = next
	}
	return off, nil
}

// readSubtree reads the inlined subroutines (and nested functions) below the
// top-level subprogram s, once.
func (ix *dwarfIndex) readSubtree(cu *compUnit, s *scope) error {
	u := cu.info
	off, end := s.subtree[0], s.subtree[1]
	s.subtree = [2]uint64{}
	stack := []*scope{s} // enclosing scope per depth; nil for other DIEs
	enclosing := func() *scope {
		for i := len(stack) - 1; i >= 0; i-- {
			if stack[i] != nil {
				return stack[i]
			}
		}
		return nil
	}
	for off < end && len(stack) > 0 {
		die := off
		a, next, err := ix.nextDIE(u, off)
		if err != nil {
			return err
		}
		off = next
		if a.tag == 0 {
			stack = stack[:len(stack)-1]
			continue
		}
		var sc *scope
		switch a.tag {
		case tagSubprogram, tagInlinedSubroutine:
			if a.low.form == 0 && a.ranges.form == 0 {
				break
			}
			rs, err := ix.dieRanges(u, &a)
			if err != nil || len(rs) == 0 {
				break
			}
			sc = &scope{ranges: rs, die: die}
			if a.tag == tagInlinedSubroutine {
				sc.callFile, sc.callLine, sc.callCol = uint32(a.callFile), uint32(a.callLine), uint32(a.callCol)
			}
			if parent := enclosing(); parent != nil && len(stack) <= maxInlineDepth*2 {
				parent.children = append(parent.children, sc)
			}
			cu.nscope++
		case tagStructureType, tagClassType, tagUnionType, tagEnumerationType, tagArrayType, tagSubroutineType:
			if a.children {
				if off, err = ix.subtreeEnd(u, next, a.sibling); err != nil {
					return err
				}
			}
			continue
		}
		if a.children {
			stack = append(stack, sc)
		}
	}
	indexChildren(s, 0)
	return nil
}

// indexChildren sorts the ranges of the children of scopes with many, so
// that finding the one holding a pc is a binary search.
func indexChildren(s *scope, depth int) {
	if len(s.children) == 0 || s.kids != nil || depth > maxInlineDepth {
		return
	}
	if len(s.children) > 8 {
		for _, c := range s.children {
			for _, r := range c.ranges {
				s.kids = append(s.kids, funcRange{r[0], r[1], c})
			}
		}
		slices.SortStableFunc(s.kids, func(a, b funcRange) int { return cmpU64(a.low, b.low) })
	}
	for _, c := range s.children {
		indexChildren(c, depth+1)
	}
}

// child returns the child of s whose ranges hold pc.
func (s *scope) child(pc uint64) *scope {
	if s.kids == nil {
		for _, c := range s.children {
			if c.contains(pc) {
				return c
			}
		}
		return nil
	}
	i, _ := slices.BinarySearchFunc(s.kids, pc+1, func(f funcRange, pc uint64) int { return cmpU64(f.low, pc) })
	for j := i - 1; j >= 0 && j >= i-16; j-- {
		if f := s.kids[j]; pc >= f.low && pc < f.high {
			return f.s
		}
	}
	return nil
}

// scopeName returns the (mangled) name of a scope, resolving it on first use.
func (ix *dwarfIndex) scopeName(s *scope) string {
	if !s.named {
		s.named = true
		s.name = ix.resolveName(s.die)
	}
	return s.name
}

// resolveName returns the linkage name of the DIE at off, following abstract
// origins and specifications, or failing that its plain name (as
// llvm-symbolizer does for its default, linkage-name, function names).
func (ix *dwarfIndex) resolveName(off uint64) string {
	var link, name string
	for depth := 0; off != 0 && link == "" && depth < 16; depth++ {
		dn := ix.nameAt(off)
		if name == "" {
			name = dn.name
		}
		link = dn.linkage
		off = dn.ref
	}
	if link != "" {
		return link
	}
	return name
}

// nameAt reads the name attributes of the DIE at off, in any unit.
func (ix *dwarfIndex) nameAt(off uint64) dieName {
	if dn, ok := ix.origins[off]; ok {
		return dn
	}
	var dn dieName
	if u := ix.unitAt(off); u != nil {
		if a, _, err := ix.readDIE(u, off); err == nil {
			dn = dieName{name: ix.str(u, a.name), linkage: ix.str(u, a.linkage), ref: a.origin}
		}
	}
	if len(ix.origins) > 1<<18 {
		clear(ix.origins)
	}
	ix.origins[off] = dn
	return dn
}

func (s *scope) contains(pc uint64) bool {
	for _, r := range s.ranges {
		if pc >= r[0] && pc < r[1] {
			return true
		}
	}
	return false
}

// frames returns pc's frames in u, innermost first.
func (ix *dwarfIndex) unitFrames(u *compUnit, pc uint64) []Frame {
	var chain []*scope
	i, _ := slices.BinarySearchFunc(u.funcs, pc+1, func(f funcRange, pc uint64) int { return cmpU64(f.low, pc) })
	for j := i - 1; j >= 0 && j >= i-4; j-- {
		if f := u.funcs[j]; pc >= f.low && pc < f.high {
			chain = append(chain, f.s)
			break
		}
	}
	if len(chain) > 0 && chain[0].subtree[1] != 0 {
		before := u.nscope
		if err := ix.readSubtree(u, chain[0]); err != nil && u.err == nil {
			u.err = err
		}
		ix.pending += int64(u.nscope-before) * 112
	}
	for len(chain) > 0 && len(chain) < maxFramesPerPC {
		next := chain[len(chain)-1].child(pc)
		if next == nil {
			break
		}
		chain = append(chain, next)
	}
	row, ok := u.row(pc)
	if len(chain) == 0 && !ok {
		return nil
	}
	frames := make([]Frame, 0, max(1, len(chain)))
	f := Frame{}
	if ok {
		f.File, f.Line, f.Column = u.file(row.file), int(row.line), int(row.column)
	}
	if len(chain) == 0 {
		return append(frames, f)
	}
	for k := len(chain) - 1; k >= 0; k-- {
		f.Function = ix.scopeName(chain[k])
		frames = append(frames, f)
		c := chain[k]
		f = Frame{File: u.file(c.callFile), Line: int(c.callLine), Column: int(c.callCol)}
	}
	return frames
}

func (u *compUnit) file(i uint32) string {
	if int(i) < len(u.files) {
		return u.files[i]
	}
	return ""
}

// row finds the line-table row for pc: the last row at or below pc in the
// sequence that holds it.
func (u *compUnit) row(pc uint64) (lineRow, bool) {
	i, _ := slices.BinarySearchFunc(u.seqs, pc+1, func(s lineSeq, pc uint64) int { return cmpU64(s.low, pc) })
	for j := i - 1; j >= 0 && j >= i-8; j-- {
		s := u.seqs[j]
		if pc < s.low || pc >= s.high {
			continue
		}
		off := uint32(pc - s.low) // < 4 GiB: sequences are no longer
		k, _ := slices.BinarySearchFunc(s.rows, off+1, func(r lineRow, off uint32) int { return cmpU64(uint64(r.off), uint64(off)) })
		if k > 0 {
			return s.rows[k-1], true
		}
	}
	return lineRow{}, false
}
