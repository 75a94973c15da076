package symbolize

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// WriteLLVM writes frames in llvm-symbolizer's default output form: for each
// frame, innermost first, the function and then file:line:column; then a
// blank line. Unknown parts are "??" and "??:0:0", as llvm-symbolizer prints.
func WriteLLVM(w io.Writer, frames []Frame) error {
	bw, ok := w.(*bufio.Writer)
	if !ok {
		bw = bufio.NewWriter(w)
		defer bw.Flush()
	}
	if len(frames) == 0 {
		frames = []Frame{{}}
	}
	for _, f := range frames {
		fn, file := f.Function, f.File
		if fn == "" {
			fn = "??"
		}
		if file == "" {
			file = "??"
		}
		bw.WriteString(fn)
		bw.WriteByte('\n')
		bw.WriteString(file)
		fmt.Fprintf(bw, ":%d:%d\n", f.Line, f.Column)
	}
	return bw.WriteByte('\n')
}

// ParseAddress parses a hexadecimal address, with or without 0x.
func ParseAddress(s string) (uint64, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("address %q: %w", s, err)
	}
	return v, nil
}

// SymbolizeStream reads addresses (hex ELF virtual addresses, one or more per
// line, whitespace separated) from r and writes each one's frames to w in
// llvm-symbolizer's form. A token that is not an address is echoed on its own
// line, as llvm-symbolizer does. Errors of the object are returned joined
// once at the end, never stopping the stream. demangle=false prints names as
// the object gives them, like llvm-symbolizer --no-demangle.
func SymbolizeStream(r io.Reader, w io.Writer, o *Object, demangle bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	bw := bufio.NewWriterSize(w, 64<<10)
	var firstErr error
	for sc.Scan() {
		for _, tok := range strings.Fields(sc.Text()) {
			addr, err := ParseAddress(tok)
			if err != nil {
				fmt.Fprintf(bw, "%s\n\n", tok)
				continue
			}
			names := namesLLVM // llvm-symbolizer's choice of alias and file
			if demangle {
				names = namesLLVMDemangled
			}
			frames, err := o.frames(addr, names)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if err := WriteLLVM(bw, frames); err != nil {
				return err
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return firstErr
}
