package symbolize

import (
	"fmt"
	"strconv"
	"strings"
)

// parseLLVMOutput splits llvm-symbolizer's default output into the frames of
// each address: pairs of lines (function, file:line:column) up to a blank line.
func parseLLVMOutput(out []byte) ([][]Frame, error) {
	var res [][]Frame
	for _, block := range strings.Split(strings.TrimRight(string(out), "\n"), "\n\n") {
		lines := strings.Split(block, "\n")
		if len(lines)%2 != 0 {
			return nil, fmt.Errorf("odd block %q", block)
		}
		var frames []Frame
		for i := 0; i < len(lines); i += 2 {
			f, err := parseLLVMFrame(lines[i], lines[i+1])
			if err != nil {
				return nil, err
			}
			frames = append(frames, f)
		}
		res = append(res, frames)
	}
	return res, nil
}

func parseLLVMFrame(fn, loc string) (Frame, error) {
	f := Frame{Function: fn}
	if fn == "??" {
		f.Function = ""
	}
	// file:line:column; the file itself may hold colons.
	i := strings.LastIndexByte(loc, ':')
	j := strings.LastIndexByte(loc[:max(i, 0)], ':')
	if i < 0 || j < 0 {
		return f, fmt.Errorf("bad location %q", loc)
	}
	var err1, err2 error
	f.File = loc[:j]
	f.Line, err1 = strconv.Atoi(loc[j+1 : i])
	f.Column, err2 = strconv.Atoi(loc[i+1:])
	if err1 != nil || err2 != nil {
		return f, fmt.Errorf("bad location %q", loc)
	}
	if f.File == "??" {
		f.File = ""
	}
	return f, nil
}
