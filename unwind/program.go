package unwind

import "slices"

// This file runs the call frame instructions of a CIE and an FDE (DWARF 5,
// section 6.4.2) and reports the rule table row by row. Only the three columns
// an unwinder needs are tracked: the CFA, the frame pointer and the return
// address; instructions about other registers are decoded and ignored.

// Call frame instructions, DW_CFA_*.
const (
	cfaAdvanceLoc       = 0x40 // high two bits
	cfaOffset           = 0x80 // high two bits
	cfaRestore          = 0xc0 // high two bits
	cfaNop              = 0x00
	cfaSetLoc           = 0x01
	cfaAdvanceLoc1      = 0x02
	cfaAdvanceLoc2      = 0x03
	cfaAdvanceLoc4      = 0x04
	cfaOffsetExtended   = 0x05
	cfaRestoreExtended  = 0x06
	cfaUndefined        = 0x07
	cfaSameValue        = 0x08
	cfaRegister         = 0x09
	cfaRememberState    = 0x0a
	cfaRestoreState     = 0x0b
	cfaDefCFA           = 0x0c
	cfaDefCFARegister   = 0x0d
	cfaDefCFAOffset     = 0x0e
	cfaDefCFAExpression = 0x0f
	cfaExpression       = 0x10
	cfaOffsetExtendedSF = 0x11
	cfaDefCFASF         = 0x12
	cfaDefCFAOffsetSF   = 0x13
	cfaValOffset        = 0x14
	cfaValOffsetSF      = 0x15
	cfaValExpression    = 0x16
	cfaMIPSAdvanceLoc8  = 0x1d
	cfaGNUWindowSave    = 0x2d // DW_CFA_AARCH64_negate_ra_state on arm64
	cfaGNUArgsSize      = 0x2e
	cfaGNUNegOffsetExt  = 0x2f
	maxRememberedStates = 64
	maxExpressionLength = 1 << 12
)

// ruleKind is how a register's value in the caller is recovered.
type ruleKind uint8

const (
	ruleUnspecified ruleKind = iota // no rule: callee-saved registers keep their value
	ruleSame
	ruleUndefined
	ruleOffset    // saved at CFA+off
	ruleValOffset // value is CFA+off
	ruleRegister  // saved in another register
	ruleExpr      // saved at the address an expression computes
	ruleValExpr   // value computed by an expression
)

type regRule struct {
	kind ruleKind
	off  int64
	reg  uint64
	expr []byte // ruleExpr
}

// cfaState is the CFA rule: a register plus an offset, or an expression.
type cfaState struct {
	isExpr bool
	reg    uint64
	off    int64
	expr   []byte // when isExpr
}

// frameState is one row of the rule table, restricted to the tracked columns.
type frameState struct {
	cfa      cfaState
	fp, ra   regRule
	raSigned bool // arm64 pointer authentication: the saved RA is signed
}

// program interprets call frame instructions for one architecture.
type program struct {
	sec         *Section
	fpReg       uint64
	remembered  []frameState
	initial     frameState
	haveInitial bool
}

// run executes the CIE's initial instructions then the FDE's, calling emit for
// every row: its start address and the rules from there until the next row.
// Rows come in address order; a later row at the same address replaces an
// earlier one. The state after a CIE's initial instructions is computed once
// per CIE, so that many FDEs sharing a long CIE cost linear time.
func (p *program) run(f *fde, emit func(pc uint64, st *frameState)) error {
	c := f.cie
	if c.init == nil {
		var st frameState
		p.remembered = p.remembered[:0]
		p.haveInitial = false
		if err := p.exec(c, c.initStart, c.initEnd, &st, nil, 0, 0); err != nil {
			return err
		}
		c.init = &cieInit{state: st, remembered: slices.Clone(p.remembered)}
	}
	st := c.init.state
	p.remembered = append(p.remembered[:0], c.init.remembered...)
	p.initial, p.haveInitial = st, true
	return p.exec(c, f.progStart, f.progEnd, &st, emit, f.begin, f.end)
}

func (p *program) exec(c *cie, start, end int, st *frameState, emit func(uint64, *frameState), loc, endPC uint64) error {
	r := &reader{sec: p.sec, data: p.sec.Data[:end], off: start}
	ra := c.raReg
	rule := func(reg uint64) *regRule {
		switch reg {
		case p.fpReg:
			return &st.fp
		case ra:
			return &st.ra
		}
		return nil // a column we do not track
	}
	set := func(reg uint64, rr regRule) {
		if t := rule(reg); t != nil {
			*t = rr
		}
	}
	restore := func(reg uint64) {
		t := rule(reg)
		if t == nil {
			return
		}
		if !p.haveInitial {
			*t = regRule{}
			return
		}
		if reg == p.fpReg {
			*t = p.initial.fp
		} else {
			*t = p.initial.ra
		}
	}
	advance := func(to uint64) {
		if emit == nil || r.err != nil {
			return
		}
		if to < loc {
			r.fail("location %#x moves back from %#x", to, loc)
			return
		}
		if to > loc && loc < endPC {
			emit(loc, st)
		}
		loc = to
	}
	da := c.dataAlign
	for r.off < len(r.data) && r.err == nil {
		op := r.u8()
		switch op & 0xc0 {
		case cfaAdvanceLoc:
			advance(loc + uint64(op&0x3f)*c.codeAlign)
			continue
		case cfaOffset:
			set(uint64(op&0x3f), regRule{kind: ruleOffset, off: int64(r.uleb()) * da})
			continue
		case cfaRestore:
			restore(uint64(op & 0x3f))
			continue
		}
		switch op {
		case cfaNop:
		case cfaSetLoc:
			if p.sec.Kind == EHFrame {
				advance(r.addr(c.fdeEnc, c.addrSize, 0))
			} else {
				advance(r.addr(peAbsptr, c.addrSize, 0))
			}
		case cfaAdvanceLoc1:
			advance(loc + uint64(r.u8())*c.codeAlign)
		case cfaAdvanceLoc2:
			advance(loc + uint64(r.u16())*c.codeAlign)
		case cfaAdvanceLoc4:
			advance(loc + uint64(r.u32())*c.codeAlign)
		case cfaMIPSAdvanceLoc8:
			advance(loc + r.u64()*c.codeAlign)
		case cfaOffsetExtended:
			reg := r.uleb()
			set(reg, regRule{kind: ruleOffset, off: int64(r.uleb()) * da})
		case cfaOffsetExtendedSF:
			reg := r.uleb()
			set(reg, regRule{kind: ruleOffset, off: r.sleb() * da})
		case cfaGNUNegOffsetExt:
			reg := r.uleb()
			set(reg, regRule{kind: ruleOffset, off: -int64(r.uleb()) * da})
		case cfaValOffset:
			reg := r.uleb()
			set(reg, regRule{kind: ruleValOffset, off: int64(r.uleb()) * da})
		case cfaValOffsetSF:
			reg := r.uleb()
			set(reg, regRule{kind: ruleValOffset, off: r.sleb() * da})
		case cfaRestoreExtended:
			restore(r.uleb())
		case cfaUndefined:
			set(r.uleb(), regRule{kind: ruleUndefined})
		case cfaSameValue:
			set(r.uleb(), regRule{kind: ruleSame})
		case cfaRegister:
			reg := r.uleb()
			set(reg, regRule{kind: ruleRegister, reg: r.uleb()})
		case cfaRememberState:
			if len(p.remembered) >= maxRememberedStates {
				r.fail("more than %d remembered states", maxRememberedStates)
				break
			}
			p.remembered = append(p.remembered, *st)
		case cfaRestoreState:
			n := len(p.remembered)
			if n == 0 {
				r.fail("DW_CFA_restore_state with no remembered state")
				break
			}
			// The CFA rule is part of the remembered state (DWARF 5, 6.4.2.4).
			*st = p.remembered[n-1]
			p.remembered = p.remembered[:n-1]
		case cfaDefCFA:
			reg := r.uleb()
			st.cfa = cfaState{reg: reg, off: int64(r.uleb())}
		case cfaDefCFASF:
			reg := r.uleb()
			st.cfa = cfaState{reg: reg, off: r.sleb() * da}
		// After an expression, def_cfa_register goes back to register+offset
		// with the offset last set, and def_cfa_offset changes an offset the
		// expression does not use: what libgcc (execute_cfa_program) and
		// readelf do, and what hand-written assembly (libgcrypt) relies on.
		case cfaDefCFARegister:
			st.cfa.reg = r.uleb()
			st.cfa.isExpr, st.cfa.expr = false, nil
		case cfaDefCFAOffset:
			st.cfa.off = int64(r.uleb())
		case cfaDefCFAOffsetSF:
			st.cfa.off = r.sleb() * da
		case cfaDefCFAExpression:
			st.cfa.isExpr, st.cfa.expr = true, p.block(r)
		case cfaExpression:
			reg := r.uleb()
			set(reg, regRule{kind: ruleExpr, expr: p.block(r)})
		case cfaValExpression:
			reg := r.uleb()
			p.block(r)
			set(reg, regRule{kind: ruleValExpr})
		case cfaGNUArgsSize:
			r.uleb()
		case cfaGNUWindowSave:
			st.raSigned = !st.raSigned
		default:
			r.fail("unknown call frame instruction %#x", op)
		}
	}
	if r.err != nil {
		return r.err
	}
	if emit != nil && loc < endPC {
		emit(loc, st)
	}
	return nil
}

// block reads a DWARF expression block: ULEB128 length, then the bytes.
func (p *program) block(r *reader) []byte {
	n := r.uleb()
	if n > maxExpressionLength {
		r.fail("expression of %d bytes", n)
		return nil
	}
	return r.bytes(int(n))
}

// DWARF expression opcodes of the expressions compiled into rows.
const (
	opLit0  = 0x30
	opLit31 = 0x4f
	opBreg0 = 0x70
	opAnd   = 0x1a
	opGe    = 0x2a
	opShl   = 0x24
	opPlus  = 0x22
	opDeref = 0x06
)

// bregExpression recognises "DW_OP_bregN off" and, with deref,
// "DW_OP_bregN off; DW_OP_deref", for register reg; it returns off.
func bregExpression(expr []byte, reg uint64, deref bool) (off int64, ok bool) {
	if reg >= 32 {
		return 0, false
	}
	r := &reader{sec: &Section{}, data: expr}
	if r.u8() != opBreg0+byte(reg) {
		return 0, false
	}
	off = r.sleb()
	if deref && r.u8() != opDeref {
		return 0, false
	}
	if r.err != nil || r.off != len(expr) {
		return 0, false
	}
	return off, true
}

// pltExpression recognises the CFA expression binutils' ld emits for the
// x86-64 lazy-binding PLT (elf_x86_64_eh_frame_plt in bfd/elf64-x86-64.c):
//
//	DW_OP_breg7 (rsp): off; DW_OP_breg16 (rip): 0; DW_OP_lit15; DW_OP_and;
//	DW_OP_litK; DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus
//
// that is CFA = rsp + off + ((rip & 15) >= K ? 8 : 0): inside each 16-byte PLT
// entry the pushq of the relocation index moves rsp by 8 from byte K on. It
// returns off and K, or ok false for any other expression.
func pltExpression(expr []byte) (off int64, k uint8, ok bool) {
	sec := &Section{Data: expr}
	r := &reader{sec: sec, data: expr}
	if r.u8() != opBreg0+7 {
		return 0, 0, false
	}
	off = r.sleb()
	if r.u8() != opBreg0+16 || r.sleb() != 0 || r.u8() != opLit0+15 || r.u8() != opAnd {
		return 0, 0, false
	}
	lit := r.u8()
	if lit < opLit0 || lit > opLit31 {
		return 0, 0, false
	}
	if r.u8() != opGe || r.u8() != opLit0+3 || r.u8() != opShl || r.u8() != opPlus {
		return 0, 0, false
	}
	if r.err != nil || r.off != len(expr) {
		return 0, 0, false
	}
	return off, lit - opLit0, true
}
