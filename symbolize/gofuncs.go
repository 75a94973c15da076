package symbolize

import (
	"fmt"

	"github.com/emberprof/ember/internal/gopclntab"
)

func (t *goTable) fileLine(f gopclntab.Func, pc uint64) (string, int) {
	line, _ := t.PCValue(f.PCLn, f.Entry, pc)
	fno, ok := t.PCValue(f.PCFile, f.Entry, pc)
	if !ok {
		return "", int(max(line, 0))
	}
	return t.File(f.CUOffset, fno), int(max(line, 0))
}

// frames returns pc's frames, the inlined calls first, by walking the inline
// tree as runtime.inlineUnwinder does: each inlined call names the function
// and the pc of its call site in its parent.
func (t *goTable) frames(pc uint64) ([]Frame, error) {
	f, ok, err := t.FuncAt(pc)
	if !ok {
		return nil, err
	}
	var tree []byte
	if len(f.PCData) > pcdataInlTreeIndex*4 && len(f.FuncData) > funcdataInlTree*4 && t.Gofunc != 0 {
		off := t.ByteOrder.Uint32(f.FuncData[funcdataInlTree*4:])
		if off != ^uint32(0) {
			tree = t.read(t.Gofunc+uint64(off), inlinedCallSize)
		}
	}
	var frames []Frame
	for len(tree) > 0 && len(frames) < maxFramesPerPC {
		ix, ok := t.PCValue(t.ByteOrder.Uint32(f.PCData[pcdataInlTreeIndex*4:]), f.Entry, pc)
		if !ok || ix < 0 {
			break
		}
		off := uint32(t.ByteOrder.Uint32(f.FuncData[funcdataInlTree*4:]))
		call := t.read(t.Gofunc+uint64(off)+uint64(ix)*inlinedCallSize, inlinedCallSize)
		if call == nil {
			return frames, fmt.Errorf("inline tree entry %d of %s unreadable: %w", ix, t.Name(f.NameOff), ErrFormat)
		}
		file, line := t.fileLine(f, pc)
		frames = append(frames, Frame{Function: t.Name(int32(t.ByteOrder.Uint32(call[4:]))), File: file, Line: line})
		parent := f.Entry + uint64(int64(int32(t.ByteOrder.Uint32(call[8:]))))
		if parent == pc {
			return frames, fmt.Errorf("inline tree of %s loops: %w", t.Name(f.NameOff), ErrFormat)
		}
		pc = parent
	}
	file, line := t.fileLine(f, pc)
	return append(frames, Frame{Function: t.Name(f.NameOff), File: file, Line: line}), nil
}
