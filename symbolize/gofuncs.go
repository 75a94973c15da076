package symbolize

import (
	"bytes"
	"fmt"
	"sort"
)

// goFunc is a decoded _func header (runtime/runtime2.go).
type goFunc struct {
	entry    uint64 // absolute address
	nameOff  int32
	pcfile   uint32
	pcln     uint32
	cuOffset uint32
	pcdata   []byte // npcdata uint32 offsets into pctab
	funcdata []byte // nfuncdata uint32 offsets from gofunc
}

// funcAt finds the function holding pc.
func (t *goTable) funcAt(pc uint64) (goFunc, bool, error) {
	if pc < t.textStart || t.nfunc == 0 {
		return goFunc{}, false, nil
	}
	off := pc - t.textStart
	if off > 1<<32 {
		return goFunc{}, false, nil
	}
	ent := func(i int) uint64 { return uint64(t.bo.Uint32(t.pcln[i*8:])) }
	// The last functab entry is the end of the last function.
	if off >= ent(t.nfunc) {
		return goFunc{}, false, nil
	}
	i := sort.Search(t.nfunc, func(i int) bool { return ent(i) > off }) - 1
	if i < 0 {
		return goFunc{}, false, nil
	}
	foff := uint64(t.bo.Uint32(t.pcln[i*8+4:]))
	if foff+funcHeaderSize > uint64(len(t.pcln)) {
		return goFunc{}, false, fmt.Errorf("func %d at %#x beyond the table: %w", i, foff, ErrFormat)
	}
	h := t.pcln[foff:]
	f := goFunc{
		entry:    t.textStart + uint64(t.bo.Uint32(h)),
		nameOff:  int32(t.bo.Uint32(h[4:])),
		pcfile:   t.bo.Uint32(h[20:]),
		pcln:     t.bo.Uint32(h[24:]),
		cuOffset: t.bo.Uint32(h[32:]),
	}
	npcdata, nfuncdata := uint64(t.bo.Uint32(h[28:])), uint64(h[43])
	end := funcHeaderSize + 4*(npcdata+nfuncdata)
	if npcdata > 1<<16 || end > uint64(len(h)) {
		return goFunc{}, false, fmt.Errorf("func %d: %d pcdata tables beyond the table: %w", i, npcdata, ErrFormat)
	}
	f.pcdata = h[funcHeaderSize : funcHeaderSize+4*npcdata]
	f.funcdata = h[funcHeaderSize+4*npcdata : end]
	return f, true, nil
}

func (t *goTable) name(off int32) string {
	if off < 0 || int(off) >= len(t.funcnames) {
		return ""
	}
	b := t.funcnames[off:]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if len(b) > maxNameLen {
		b = b[:maxNameLen]
	}
	return string(b)
}

// pcvalue decodes the value table at pctab[off] for targetpc, as
// runtime.pcvalue does: pairs of a zig-zag value delta and a pc delta (in
// units of the quantum), starting at value -1 from the function's entry.
func (t *goTable) pcvalue(off uint32, entry, targetpc uint64) (int64, bool) {
	if off == 0 || int(off) >= len(t.pctab) {
		return -1, false
	}
	p := t.pctab[off:]
	val, pc := int64(-1), entry
	for step := 0; step < maxPCValueSteps; step++ {
		uv, n := uvarint(p)
		if n <= 0 || (uv == 0 && step > 0) {
			return -1, false
		}
		p = p[n:]
		if uv&1 != 0 {
			val += -int64(uv>>1) - 1
		} else {
			val += int64(uv >> 1)
		}
		pcd, n := uvarint(p)
		if n <= 0 {
			return -1, false
		}
		p = p[n:]
		pc += pcd * t.quantum
		if targetpc < pc {
			return val, true
		}
	}
	return -1, false
}

func uvarint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, -1
}

func (t *goTable) fileLine(f goFunc, pc uint64) (string, int) {
	line, _ := t.pcvalue(f.pcln, f.entry, pc)
	fno, ok := t.pcvalue(f.pcfile, f.entry, pc)
	if !ok || fno < 0 {
		return "", int(max(line, 0))
	}
	i := (uint64(f.cuOffset) + uint64(fno)) * 4
	if i+4 > uint64(len(t.cutab)) {
		return "", int(max(line, 0))
	}
	foff := t.bo.Uint32(t.cutab[i:])
	if foff == ^uint32(0) || int(foff) >= len(t.filetab) {
		return "", int(max(line, 0))
	}
	b := t.filetab[foff:]
	if j := bytes.IndexByte(b, 0); j >= 0 {
		b = b[:j]
	}
	return string(b), int(max(line, 0))
}

// frames returns pc's frames, the inlined calls first, by walking the inline
// tree as runtime.inlineUnwinder does: each inlined call names the function
// and the pc of its call site in its parent.
func (t *goTable) frames(pc uint64) ([]Frame, error) {
	f, ok, err := t.funcAt(pc)
	if !ok {
		return nil, err
	}
	var tree []byte
	if len(f.pcdata) > pcdataInlTreeIndex*4 && len(f.funcdata) > funcdataInlTree*4 && t.gofunc != 0 {
		off := t.bo.Uint32(f.funcdata[funcdataInlTree*4:])
		if off != ^uint32(0) {
			tree = t.read(t.gofunc+uint64(off), inlinedCallSize)
		}
	}
	var frames []Frame
	for len(tree) > 0 && len(frames) < maxFramesPerPC {
		ix, ok := t.pcvalue(t.bo.Uint32(f.pcdata[pcdataInlTreeIndex*4:]), f.entry, pc)
		if !ok || ix < 0 {
			break
		}
		off := uint32(t.bo.Uint32(f.funcdata[funcdataInlTree*4:]))
		call := t.read(t.gofunc+uint64(off)+uint64(ix)*inlinedCallSize, inlinedCallSize)
		if call == nil {
			return frames, fmt.Errorf("inline tree entry %d of %s unreadable: %w", ix, t.name(f.nameOff), ErrFormat)
		}
		file, line := t.fileLine(f, pc)
		frames = append(frames, Frame{Function: t.name(int32(t.bo.Uint32(call[4:]))), File: file, Line: line})
		parent := f.entry + uint64(int64(int32(t.bo.Uint32(call[8:]))))
		if parent == pc {
			return frames, fmt.Errorf("inline tree of %s loops: %w", t.name(f.nameOff), ErrFormat)
		}
		pc = parent
	}
	file, line := t.fileLine(f, pc)
	return append(frames, Frame{Function: t.name(f.nameOff), File: file, Line: line}), nil
}
