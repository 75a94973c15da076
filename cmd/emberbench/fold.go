package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

// The last step of perf's usual pipeline, `perf script | stackcollapse-perf.pl`:
// fold each sample's stack into one "comm;root;...;leaf count" line. The
// harness runs it as its own process (`emberbench fold IN OUT`) so that its
// CPU time is measured like perf's.

// perfFrameRE matches a perf script stack line: "\t  ip sym+0xoff (dso)".
var perfFrameRE = regexp.MustCompile(`^\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)$`)

// maxLine caps one line of perf script output.
const maxLine = 1 << 20

// fold reads perf script output and returns its folded stacks.
func fold(r io.Reader) (map[string]int64, error) {
	out := make(map[string]int64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var comm string
	var frames []string
	inSample := false
	flush := func() {
		if !inSample {
			return
		}
		parts := make([]string, 0, len(frames)+1)
		parts = append(parts, comm)
		for i := len(frames) - 1; i >= 0; i-- {
			parts = append(parts, frames[i])
		}
		out[strings.Join(parts, ";")]++
		frames = frames[:0]
		inSample = false
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] != ' ' && line[0] != '\t':
			flush()
			m := perfHeaderRE.FindStringSubmatch(line)
			if m == nil {
				continue // not a sample header (e.g. a mmap event line)
			}
			comm, inSample = strings.ReplaceAll(m[1], ";", "_"), true
		case inSample:
			m := perfFrameRE.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			frames = append(frames, frameName(m[1], m[2]))
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("fold: %w", err)
	}
	return out, nil
}

// frameName drops the "+0xOFF" of a perf symbol; unknown symbols are named
// by their object, as stackcollapse-perf.pl does.
func frameName(sym, dso string) string {
	if i := strings.LastIndex(sym, "+0x"); i > 0 {
		sym = sym[:i]
	}
	if sym == "[unknown]" && dso != "" && dso != "[unknown]" {
		sym = dso[strings.LastIndex(dso, "/")+1:]
		if !strings.HasPrefix(sym, "[") {
			sym = "[" + sym + "]"
		}
	}
	return strings.ReplaceAll(sym, ";", "_")
}

// writeFolded writes stacks sorted, one "stack count" per line.
func writeFolded(w io.Writer, stacks map[string]int64) error {
	keys := make([]string, 0, len(stacks))
	for k := range stacks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	bw := bufio.NewWriter(w)
	for _, k := range keys {
		fmt.Fprintf(bw, "%s %d\n", k, stacks[k])
	}
	return bw.Flush()
}

// foldMain is `emberbench fold IN OUT`.
func foldMain(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: emberbench fold PERF_SCRIPT_OUTPUT FOLDED")
	}
	in, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer in.Close()
	stacks, err := fold(in)
	if err != nil {
		return err
	}
	out, err := os.Create(args[1])
	if err != nil {
		return err
	}
	if err := writeFolded(out, stacks); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
