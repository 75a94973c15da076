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
	name     string // linkage name if any, else name; mangled
	callFile uint32 // for inlined subroutines: the call site in the parent
	callLine uint32
	callCol  uint32
	children []*scope
}

type funcRange struct {
	low, high uint64
	s         *scope
}

// dieName is what a DIE says about its name, directly or by reference.
type dieName struct {
	name, linkage string
	ref           dwarf.Offset // DW_AT_abstract_origin or DW_AT_specification
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
	serr := ix.readScopes(u, r)
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
		if names := v5FileNames(ix.line, ix.str, ix.lineStr, uint64(off), ix.bo, compDir); len(names) == len(u.files) {
			copy(u.files, names)
		}
	}
	var (
		le   dwarf.LineEntry
		rows []lineRow
	)
	for {
		if err := lr.Next(&le); err != nil {
			if err == io.EOF {
				break
			}
			return fmt.Errorf("line table of unit at %#x: %w: %w", u.off, ErrFormat, err)
		}
		if le.File != nil {
			if _, ok := index[le.File]; !ok {
				addFiles()
			}
		}
		row := lineRow{addr: le.Address, file: fileIndex(le.File), line: uint32(le.Line), column: uint32(le.Column)}
		if le.EndSequence {
			if len(rows) > 0 && le.Address > rows[0].addr {
				u.seqs = append(u.seqs, lineSeq{low: rows[0].addr, high: le.Address, rows: slices.Clip(rows)})
			}
			rows = nil
			continue
		}
		if len(rows) > 0 && le.Address < rows[len(rows)-1].addr {
			continue // not increasing: malformed, drop the row
		}
		rows = append(rows, row)
	}
	slices.SortStableFunc(u.seqs, func(a, b lineSeq) int { return cmpU64(a.low, b.low) })
	return nil
}

// readScopes walks the unit's DIEs once, building the tree of subprograms and
// inlined subroutines that have code, and resolving their names.
func (ix *dwarfIndex) readScopes(u *compUnit, r *dwarf.Reader) error {
	names := make(map[dwarf.Offset]dieName)
	type pending struct {
		s   *scope
		own dieName
	}
	var (
		all   []pending
		stack = []*scope{nil} // enclosing scope per depth, from the unit's DIE; nil for other DIEs
	)
	enclosing := func() *scope {
		for i := len(stack) - 1; i >= 0; i-- {
			if stack[i] != nil {
				return stack[i]
			}
		}
		return nil
	}
	for {
		e, err := r.Next()
		if err != nil {
			return fmt.Errorf("DIEs of unit at %#x: %w: %w", u.off, ErrFormat, err)
		}
		if e == nil {
			break
		}
		if e.Tag == 0 {
			if len(stack) == 0 {
				break
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				break
			}
			continue
		}
		if e.Tag == dwarf.TagCompileUnit || e.Tag == dwarf.TagPartialUnit || e.Tag == dwarf.TagTypeUnit {
			break // the next unit
		}
		var sc *scope
		switch e.Tag {
		case dwarf.TagSubprogram, dwarf.TagInlinedSubroutine:
			dn := entryName(e)
			if e.Tag == dwarf.TagSubprogram {
				names[e.Offset] = dn
			}
			if e.Val(dwarf.AttrLowpc) == nil && e.Val(dwarf.AttrRanges) == nil {
				break
			}
			rs, err := ix.d.Ranges(e)
			if err != nil || len(rs) == 0 {
				break
			}
			sc = &scope{ranges: rs}
			if e.Tag == dwarf.TagInlinedSubroutine {
				parent := enclosing()
				if parent == nil {
					break
				}
				sc.callFile = uint32(asInt(e.Val(dwarf.AttrCallFile)))
				sc.callLine = uint32(asInt(e.Val(dwarf.AttrCallLine)))
				sc.callCol = uint32(asInt(e.Val(dwarf.AttrCallColumn)))
				if len(stack) <= maxInlineDepth*2 {
					parent.children = append(parent.children, sc)
				}
			} else {
				if p := enclosing(); p != nil {
					p.children = append(p.children, sc) // a nested function
				} else {
					for _, rg := range rs {
						if rg[1] > rg[0] {
							u.funcs = append(u.funcs, funcRange{rg[0], rg[1], sc})
						}
					}
				}
			}
			all = append(all, pending{sc, dn})
			u.nscope++
		case dwarf.TagEnumerationType, dwarf.TagSubroutineType, dwarf.TagArrayType:
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		if e.Children {
			stack = append(stack, sc)
		}
	}
	for _, p := range all {
		p.s.name = ix.resolveName(p.own, names, 0)
	}
	slices.SortStableFunc(u.funcs, func(a, b funcRange) int { return cmpU64(a.low, b.low) })
	return nil
}

func asInt(v any) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case uint64:
		return int64(v)
	}
	return 0
}

func entryName(e *dwarf.Entry) dieName {
	var dn dieName
	dn.name, _ = e.Val(dwarf.AttrName).(string)
	if s, ok := e.Val(dwarf.AttrLinkageName).(string); ok {
		dn.linkage = s
	} else if s, ok := e.Val(attrMIPSLinkageName).(string); ok {
		dn.linkage = s
	}
	if o, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset); ok {
		dn.ref = o
	} else if o, ok := e.Val(dwarf.AttrSpecification).(dwarf.Offset); ok {
		dn.ref = o
	}
	return dn
}

// resolveName returns the linkage name of a DIE, following abstract origins
// and specifications, or failing that its plain name (as llvm-symbolizer does
// for its default, linkage-name, function names).
func (ix *dwarfIndex) resolveName(dn dieName, local map[dwarf.Offset]dieName, depth int) string {
	link, name := dn.linkage, dn.name
	for ref := dn.ref; ref != 0 && link == "" && depth < 16; depth++ {
		next, ok := local[ref]
		if !ok {
			next = ix.remoteName(ref)
		}
		if name == "" {
			name = next.name
		}
		link = next.linkage
		ref = next.ref
	}
	if link != "" {
		return link
	}
	return name
}

// remoteName reads the name of a DIE in another unit (DW_FORM_ref_addr).
func (ix *dwarfIndex) remoteName(off dwarf.Offset) dieName {
	if dn, ok := ix.origins[off]; ok {
		return dn
	}
	r := ix.d.Reader()
	r.Seek(off)
	var dn dieName
	if e, err := r.Next(); err == nil && e != nil && e.Offset == off {
		dn = entryName(e)
	}
	if len(ix.origins) < 1<<16 {
		ix.origins[off] = dn
	}
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
func (u *compUnit) frames(pc uint64) []Frame {
	var chain []*scope
	i, _ := slices.BinarySearchFunc(u.funcs, pc+1, func(f funcRange, pc uint64) int { return cmpU64(f.low, pc) })
	for j := i - 1; j >= 0 && j >= i-4; j-- {
		if f := u.funcs[j]; pc >= f.low && pc < f.high {
			chain = append(chain, f.s)
			break
		}
	}
	for len(chain) > 0 && len(chain) < maxFramesPerPC {
		var next *scope
		for _, c := range chain[len(chain)-1].children {
			if c.contains(pc) {
				next = c
				break
			}
		}
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
		f.Function = chain[k].name
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

// attrMIPSLinkageName is DW_AT_MIPS_linkage_name, used by older compilers.
const attrMIPSLinkageName dwarf.Attr = 0x2007
