package unwind

import (
	"encoding/binary"
	"fmt"
)

// Regs are the registers a walk starts from: those of the interrupted user
// context (pt_regs). FP is rbp on x86-64 and x29 on arm64; LR, the register a
// leaf may keep its return address in (RALink), is x30 on arm64 and rdi on
// x86-64.
type Regs struct {
	PC, SP, FP, LR uint64
}

// ReadMem reads n bytes of the walked process's memory at addr, like
// bpf_probe_read_user.
type ReadMem func(addr uint64, n int) ([]byte, error)

// Reason says why a walk stopped. The values are the indexes of the BPF
// program's per-CPU truncation counters (doc.go); only ReasonComplete means
// the whole stack was found.
type Reason uint8

const (
	ReasonComplete    Reason = iota // reached the outermost frame
	ReasonNoMapping                 // PC in no known executable mapping (JIT, anonymous code)
	ReasonNoRow                     // PC in a binary's table but no FDE covers it
	ReasonUnsupported               // the row's rule is marked unsupported
	ReasonReadFailed                // reading the stack failed
	ReasonBadFrame                  // the stack did not move up, or a rule gave nonsense
	ReasonMaxFrames                 // MaxFrames frames and still going
	ReasonBadTable                  // table id or row index outside the maps
	numReasons
)

var reasonNames = [...]string{"complete", "no-mapping", "no-row", "unsupported-rule", "read-failed", "bad-frame", "max-frames", "bad-table"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Unwind walks the user stack of process pid from regs with the tables in m,
// exactly as the BPF walker does, and returns the PCs, leaf first: the first
// is regs.PC, the others are return addresses. Mappings flagged
// MappingFramePointers, code in a tabled mapping that its table has no row
// for, and every frame of a process m does not know, are walked with frame
// pointers, and the walk goes on with tables in the caller's mapping.
func Unwind(regs Regs, readMem ReadMem, m *Maps, pid uint32) ([]uint64, Reason) {
	proc := m.Procs[pid]
	pcs := make([]uint64, 0, 32)
	pc, sp, fp, lr := regs.PC, regs.SP, regs.FP, regs.LR
	read64 := func(addr uint64) (uint64, bool) {
		b, err := readMem(addr, 8)
		if err != nil || len(b) != 8 {
			return 0, false
		}
		return binary.LittleEndian.Uint64(b), true
	}
	// fpStep steps to the caller with frame pointers, as the BPF walker's
	// fp_step: [fp] is the caller's fp, [fp+8] the return address. stop
	// says the walk ends here, for reason r.
	fpStep := func() (r Reason, stop bool) {
		if fp == 0 {
			return ReasonComplete, true
		}
		if fp < sp {
			return ReasonBadFrame, true
		}
		nfp, ok1 := read64(fp)
		ra, ok2 := read64(fp + 8)
		if !ok1 || !ok2 {
			return ReasonReadFailed, true
		}
		pc, sp, fp = ra, fp+16, nfp
		return ReasonComplete, false
	}
	for i := 0; i < MaxFrames; i++ {
		if pc == 0 {
			return pcs, ReasonComplete
		}
		pcs = append(pcs, pc)
		// A return address points after the call; look up the call itself.
		lookup := pc
		if i > 0 {
			lookup--
		}
		var mp Mapping
		found := false
		if proc != nil {
			mp, found = findMapping(proc, lookup)
			if !found {
				return pcs, ReasonNoMapping
			}
		}
		if !found || mp.Flags&MappingFramePointers != 0 {
			if r, stop := fpStep(); stop {
				return pcs, r
			}
			continue
		}
		ti, ok := m.table(mp.TableID)
		if !ok {
			return pcs, ReasonBadTable
		}
		row, reason := lookupRow(m.arrays(mp.TableID), ti, lookup-mp.Bias)
		if reason == ReasonNoRow || reason == ReasonComplete && row.CFA == CFANone {
			// Code a table has no row for inside a tabled file (V8's
			// builtins embedded in node, hand-written trampolines) keeps
			// frame pointers, like JIT code: step through it with them and
			// go on with tables in the caller.
			if r, stop := fpStep(); stop {
				return pcs, r
			}
			continue
		}
		if reason != ReasonComplete {
			return pcs, reason
		}
		var cfa uint64
		switch row.CFA {
		case CFASP:
			cfa = sp + uint64(int64(row.CFAOffset))
		case CFAFP:
			cfa = fp + uint64(int64(row.CFAOffset))
		case CFADerefFP:
			if cfa, ok = read64(fp + uint64(int64(row.CFAOffset))); !ok {
				return pcs, ReasonReadFailed
			}
		case CFAPLT:
			cfa = sp + uint64(int64(row.CFAOffset))
			if lookup&15 >= uint64(row.FPOffset) {
				cfa += 8
			}
		default:
			return pcs, ReasonUnsupported
		}
		var ra uint64
		switch row.RA {
		case RAUndefined:
			return pcs, ReasonComplete
		case RALink:
			if i > 0 {
				return pcs, ReasonBadFrame // only the leaf can still hold its RA in a register
			}
			ra = lr
		case RAOffset, RASwitch:
			if ra, ok = read64(cfa + uint64(int64(row.RAOffset))); !ok {
				return pcs, ReasonReadFailed
			}
		}
		switch row.FP {
		case FPOffset:
			if fp, ok = read64(cfa + uint64(int64(row.FPOffset))); !ok {
				return pcs, ReasonReadFailed
			}
		case FPAtFP:
			if fp, ok = read64(fp + uint64(int64(row.FPOffset))); !ok {
				return pcs, ReasonReadFailed
			}
		case FPUndefined:
			fp = 0
		}
		// The caller's stack pointer is the CFA. It must move up, except in
		// a leaf whose RA is still in LR, where the CFA may be SP, and at a
		// switch of stacks (Go's systemstack), where it may be anywhere.
		if cfa <= sp && !(row.RA == RALink && cfa == sp) && row.RA != RASwitch {
			return pcs, ReasonBadFrame
		}
		pc, sp = ra, cfa
	}
	return pcs, ReasonMaxFrames
}

// findMapping binary searches the sorted mappings of a struct unwind_proc.
func findMapping(proc []byte, addr uint64) (Mapping, bool) {
	if len(proc) < ProcSize {
		return Mapping{}, false
	}
	n := binary.LittleEndian.Uint32(proc)
	if n == 0 || n > MaxMappings {
		return Mapping{}, false
	}
	lo, hi := uint32(0), n // the last mapping with Start <= addr is in [lo, hi)
	for step := 0; step < MappingSearchSteps && hi-lo > 1; step++ {
		mid := lo + (hi-lo)/2
		if decodeMapping(proc, mid).Start <= addr {
			lo = mid
		} else {
			hi = mid
		}
	}
	m := decodeMapping(proc, lo)
	if addr < m.Start || addr >= m.End {
		return Mapping{}, false
	}
	return m, true
}

// lookupRow finds the rules for virtual address vaddr in table ti: its page,
// then a binary search of at most SearchSteps probes over the page's rows for
// the last row at or below vaddr (the page's first row is at offset 0, so
// there is one), then the row's rule. It returns ReasonComplete on success.
func lookupRow(m tableArrays, ti TableInfo, vaddr uint64) (Row, Reason) {
	if vaddr < ti.Base {
		return Row{}, ReasonNoRow
	}
	page := (vaddr - ti.Base) >> PageShift
	if page >= uint64(ti.NumPages) {
		return Row{}, ReasonNoRow
	}
	first, n, ok := decodePage(m.pages, uint64(ti.FirstPage)+page)
	if !ok || n == 0 {
		return Row{}, ReasonBadTable
	}
	rel := uint16(vaddr - ti.Base) // offset inside the page
	base := uint64(ti.FirstRow) + uint64(first)
	lo, hi := uint32(0), n // the answer is in [lo, hi)
	for step := 0; step < SearchSteps && hi-lo > 1; step++ {
		mid := lo + (hi-lo)/2
		pcLo, _, ok := decodeRow(m.rows, base+uint64(mid))
		if !ok {
			return Row{}, ReasonBadTable
		}
		if pcLo <= rel {
			lo = mid
		} else {
			hi = mid
		}
	}
	if hi-lo > 1 {
		return Row{}, ReasonBadTable
	}
	_, rule, ok := decodeRow(m.rows, base+uint64(lo))
	if !ok || uint32(rule) >= ti.NumRules {
		return Row{}, ReasonBadTable
	}
	r, ok := decodeRule(m.rules, uint64(ti.FirstRule)+uint64(rule))
	if !ok {
		return Row{}, ReasonBadTable
	}
	return r, ReasonComplete
}
