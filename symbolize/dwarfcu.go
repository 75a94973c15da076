package symbolize

import (
	"debug/dwarf"
	"errors"
	"fmt"
	"io"
	"slices"
)

// compUnit is one DWARF compilation unit, parsed on first use.
type compUnit struct {
	off    dwarf.Offset // of the unit's DIE
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
	addr   uint64
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
}

type funcRange struct {
	low, high uint64
	s         *scope
}

func (u *compUnit) cost() int64 {
	c := int64(len(u.files)) * 64
	for _, s := range u.seqs {
		c += 40 + int64(len(s.rows))*24
	}
	return c + int64(len(u.funcs))*24 + int64(u.nscope)*112
}

// parseUnit reads the line table of u and the tree of subprograms and inlined
// subroutines in it.
func (ix *dwarfIndex) parseUnit(u *compUnit) error {
	r := ix.d.Reader()
	r.Seek(u.off)
	cu, err := r.Next()
	if err != nil || cu == nil {
		return fmt.Errorf("unit at %#x: %w: %v", u.off, ErrFormat, err)
	}
	lerr := ix.readLines(u, cu)
	serr := ix.readScopes(u)
	return errors.Join(lerr, serr)
}

func (ix *dwarfIndex) readLines(u *compUnit, cu *dwarf.Entry) error {
	lr, err := ix.d.LineReader(cu)
	if err != nil {
		return fmt.Errorf("line table of unit at %#x: %w: %w", u.off, ErrFormat, err)
	}
	if lr == nil {
		return nil
	}
	index := make(map[*dwarf.LineFile]uint32)
	fileIndex := func(f *dwarf.LineFile) uint32 {
		if f == nil {
			return 0
		}
		if i, ok := index[f]; ok {
			return i
		}
		return uint32(len(u.files)) // appended below, by define_file
	}
	addFiles := func() {
		for i, f := range lr.Files() {
			if i < len(u.files) {
				continue
			}
			name := ""
			if f != nil {
				name = f.Name
				index[f] = uint32(i)
			}
			u.files = append(u.files, name)
		}
	}
	addFiles()
	if off, ok := cu.Val(dwarf.AttrStmtList).(int64); ok {
		compDir, _ := cu.Val(dwarf.AttrCompDir).(string)
		if names := v5FileNames(ix.line, ix.strSec, ix.lineStr, uint64(off), ix.bo, compDir); len(names) == len(u.files) {
			copy(u.files, names)
		}
	}
	var (
		le       dwarf.LineEntry
		all      = make([]lineRow, 0, 256) // rows of every sequence, in one array
		start    int
		bounds   [][3]uint64 // start row, end row, end address of each sequence
		lastFile *dwarf.LineFile
		lastIdx  uint32
	)
	for {
		if err := lr.Next(&le); err != nil {
			if err == io.EOF {
				break
			}
			return fmt.Errorf("line table of unit at %#x: %w: %w", u.off, ErrFormat, err)
		}
		if le.File != lastFile {
			if _, ok := index[le.File]; le.File != nil && !ok {
				addFiles()
			}
			lastFile, lastIdx = le.File, fileIndex(le.File)
		}
		if le.EndSequence {
			if len(all) > start && le.Address > all[start].addr {
				bounds = append(bounds, [3]uint64{uint64(start), uint64(len(all)), le.Address})
				start = len(all)
			} else {
				all = all[:start]
			}
			continue
		}
		if len(all) > start && le.Address < all[len(all)-1].addr {
			continue // not increasing: malformed, drop the row
		}
		all = append(all, lineRow{addr: le.Address, file: lastIdx, line: uint32(le.Line), column: uint32(le.Column)})
	}
	all = all[:start]
	if cap(all) > len(all)+len(all)/4 {
		all = slices.Clone(all)
	}
	u.seqs = make([]lineSeq, 0, len(bounds))
	for _, b := range bounds {
		rows := all[b[0]:b[1]:b[1]]
		u.seqs = append(u.seqs, lineSeq{low: rows[0].addr, high: b[2], rows: rows})
	}
	slices.SortStableFunc(u.seqs, func(a, b lineSeq) int { return cmpU64(a.low, b.low) })
	return nil
}

// readScopes walks the unit's DIEs once with the scanner, building the tree
// of subprograms and inlined subroutines that have code. Children of types
// are skipped by DW_AT_sibling where the compiler gives one.
func (ix *dwarfIndex) readScopes(cu *compUnit) error {
	u := cu.info
	a, off, err := ix.readDIE(u, u.first)
	if err != nil {
		return err
	}
	if !a.children {
		return nil
	}
	stack := []*scope{nil} // enclosing scope per depth; nil for other DIEs
	enclosing := func() *scope {
		for i := len(stack) - 1; i >= 0; i-- {
			if stack[i] != nil {
				return stack[i]
			}
		}
		return nil
	}
	for off < u.end && len(stack) > 0 {
		die := off
		a, next, err := ix.readDIE(u, off)
		if err != nil {
			return err
		}
		if next <= off {
			return fmt.Errorf("DIE at %#x: no progress: %w", off, ErrFormat)
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
			parent := enclosing()
			if a.tag == tagInlinedSubroutine {
				if parent == nil {
					sc = nil
					break
				}
				sc.callFile, sc.callLine, sc.callCol = uint32(a.callFile), uint32(a.callLine), uint32(a.callCol)
				if len(stack) <= maxInlineDepth*2 {
					parent.children = append(parent.children, sc)
				}
			} else if parent != nil {
				parent.children = append(parent.children, sc) // a nested function
			} else {
				for _, rg := range rs {
					cu.funcs = append(cu.funcs, funcRange{rg[0], rg[1], sc})
				}
			}
			cu.nscope++
		case tagStructureType, tagClassType, tagUnionType, tagEnumerationType, tagArrayType, tagSubroutineType:
			if a.children && a.sibling > die && a.sibling <= u.end {
				off = a.sibling
				continue
			}
		}
		if a.children {
			stack = append(stack, sc)
		}
	}
	slices.SortStableFunc(cu.funcs, func(a, b funcRange) int { return cmpU64(a.low, b.low) })
	for _, f := range cu.funcs {
		indexChildren(f.s, 0)
	}
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
		k, _ := slices.BinarySearchFunc(s.rows, pc+1, func(r lineRow, pc uint64) int { return cmpU64(r.addr, pc) })
		if k > 0 {
			return s.rows[k-1], true
		}
	}
	return lineRow{}, false
}
