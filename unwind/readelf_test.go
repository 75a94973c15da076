package unwind

import (
	"bufio"
	"bytes"
	"cmp"
	"debug/elf"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The tables are checked against binutils: `readelf --debug-dump=frames-interp`
// prints the interpreted rule table of every FDE, and every row of it must
// agree with the table built here, in both directions.

// refRow is one row of readelf's table: LOC, CFA, frame pointer (rbp or
// x29) and ra columns as text. cfa "none" marks the end of an FDE.
type refRow struct {
	loc         uint64
	cfa, fp, ra string
}

// regNames are readelf's names for the stack and frame pointer registers.
func regNames(arch Arch) (sp, fp string) {
	if arch == ARM64 {
		return "sp", "x29"
	}
	return "rsp", "rbp"
}

type refFDE struct {
	begin, end uint64
	debugFrame bool
	rows       []refRow
}

var (
	reFDE = regexp.MustCompile(`^([0-9a-f]+) [0-9a-f]+ [0-9a-f]+ FDE cie=([0-9a-f]+) pc=([0-9a-f]+)\.\.([0-9a-f]+)`)
	reCIE = regexp.MustCompile(`^([0-9a-f]+) [0-9a-f]+ [0-9a-f]+ CIE`)
	reRow = regexp.MustCompile(`^[0-9a-f]{16} `) // LOC of a 64-bit binary
)

// readelfFrames runs readelf on path and parses its interpreted frame tables.
func readelfFrames(t *testing.T, path string, arch Arch) []refFDE {
	_, fpName := regNames(arch)
	t.Helper()
	// readelf exits 1 when it also follows a debug link to a file whose
	// sections are NOBITS; what it printed for path itself is still good.
	out, err := exec.Command("readelf", "--wide", "--debug-dump=frames-interp", path).Output()
	if err != nil && !bytes.Contains(out, []byte(" FDE ")) {
		t.Fatalf("readelf (Debian package binutils): %v", err)
	}
	type cieKey struct {
		debug bool
		off   uint64
	}
	cieRows := map[cieKey]refRow{}
	var fdes []refFDE
	var cur *refFDE
	var curCIE int64 = -1
	var cols []string
	debug := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Contents of the .debug_frame"):
			debug, cur, curCIE = true, nil, -1
		case strings.HasPrefix(line, "Contents of the .eh_frame"):
			debug, cur, curCIE = false, nil, -1
		case reFDE.MatchString(line):
			m := reFDE.FindStringSubmatch(line)
			begin, _ := strconv.ParseUint(m[3], 16, 64)
			end, _ := strconv.ParseUint(m[4], 16, 64)
			fdes = append(fdes, refFDE{begin: begin, end: end, debugFrame: debug})
			cur, curCIE = &fdes[len(fdes)-1], -1
			// Until rows say otherwise, the FDE has its CIE's initial rules.
			cieOff, _ := strconv.ParseUint(m[2], 16, 64)
			if r, ok := cieRows[cieKey{debug, cieOff}]; ok {
				r.loc = begin
				cur.rows = []refRow{r}
			}
		case reCIE.MatchString(line):
			off, _ := strconv.ParseInt(reCIE.FindStringSubmatch(line)[1], 16, 64)
			cur, curCIE = nil, off
		case strings.HasPrefix(line, "   LOC"):
			cols = strings.Fields(line)
		case reRow.MatchString(line):
			// A register rule prints as "r3 (rbx)": glue the name back on.
			var f []string
			for _, w := range strings.Fields(line) {
				if strings.HasPrefix(w, "(") && len(f) > 0 {
					f[len(f)-1] += " " + w
				} else {
					f = append(f, w)
				}
			}
			loc, _ := strconv.ParseUint(f[0], 16, 64)
			r := refRow{loc: loc, fp: "u", ra: "u"}
			for i := 1; i < len(f) && i < len(cols); i++ {
				switch cols[i] {
				case "CFA":
					r.cfa = f[i]
				case fpName:
					r.fp = f[i]
				case "ra":
					r.ra = f[i]
				}
			}
			switch {
			case cur != nil:
				if n := len(cur.rows); n > 0 && cur.rows[n-1].loc == loc {
					cur.rows[n-1] = r
				} else {
					cur.rows = append(cur.rows, r)
				}
			case curCIE >= 0:
				cieRows[cieKey{debug, uint64(curCIE)}] = r
			}
		}
	}
	return fdes
}

// flatten keeps the FDEs the table builder keeps (inside executable
// segments, .eh_frame before .debug_frame, no overlaps) and returns their rows
// in address order with an end marker after each FDE.
func flatten(t *testing.T, path string, fdes []refFDE) []refRow {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inText := func(lo, hi uint64) bool {
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && lo >= p.Vaddr && hi <= p.Vaddr+p.Memsz {
				return true
			}
		}
		return false
	}
	slices.SortStableFunc(fdes, func(a, b refFDE) int {
		if c := cmp.Compare(a.begin, b.begin); c != 0 {
			return c
		}
		switch {
		case a.debugFrame == b.debugFrame:
			return 0
		case b.debugFrame:
			return -1
		}
		return 1
	})
	var rows []refRow
	var coveredTo uint64
	for _, fd := range fdes {
		if fd.begin == fd.end || !inText(fd.begin, fd.end) || fd.begin < coveredTo || len(fd.rows) == 0 {
			continue
		}
		if n := len(rows); n > 0 && rows[n-1].loc == fd.begin {
			rows = rows[:n-1]
		}
		for _, r := range fd.rows {
			if r.loc < fd.end {
				rows = append(rows, r)
			}
		}
		rows = append(rows, refRow{loc: fd.end, cfa: "none"})
		coveredTo = fd.end
	}
	return rows
}

// agree compares one of our rows with readelf's rules at the same address.
// supported is whether readelf's rules are ones the table must represent.
func agree(arch Arch, r Row, ref refRow) (supported, ok bool) {
	if ref.cfa == "none" {
		return true, r.CFA == CFANone
	}
	spName, fpName := regNames(arch)
	var kind CFAKind
	var off int64
	regOff := func(reg string) bool { // "rsp+8", "sp-16"
		rest, ok := strings.CutPrefix(ref.cfa, reg)
		if !ok || rest == "" || (rest[0] != '+' && rest[0] != '-') {
			return false
		}
		n, err := strconv.ParseInt(rest, 10, 64)
		off = n
		return err == nil
	}
	switch {
	case regOff(spName):
		kind = CFASP
	case regOff(fpName):
		kind = CFAFP
	case ref.cfa == "exp":
		// An expression: interp output does not show which, so only check
		// that it is compiled (the PLT's, checked by TestPLTRows; the stack
		// realignment's, walked by the live tests) or marked, not guessed.
		return false, r.CFA == CFAPLT || r.CFA == CFADerefFP || !r.CFA.Supported()
	default:
		return false, !r.CFA.Supported()
	}
	if ref.fp == "exp" {
		return false, r.FP == FPAtFP || !r.CFA.Supported()
	}
	fpOK := ref.fp == "u" || ref.fp == "s" || strings.HasPrefix(ref.fp, "c")
	raOff, raErr := strconv.ParseInt(strings.TrimPrefix(ref.ra, "c"), 10, 64)
	raOK := ref.ra == "u" || (strings.HasPrefix(ref.ra, "c") && raErr == nil && (arch == ARM64 || raOff == -8))
	if arch == ARM64 {
		raOK = raOK || ref.ra == "s"
	}
	// Kept in rdi (glibc's __vfork): the leaf's RA register on x86-64.
	raInReg := arch == AMD64 && ref.ra == "r5 (rdi)"
	raOK = raOK || raInReg
	if !fpOK || !raOK {
		return false, !r.CFA.Supported()
	}
	fpOff, _ := strconv.ParseInt(strings.TrimPrefix(ref.fp, "c"), 10, 64)
	if off < minCFAOffset || off > maxCFAOffset || raOff < math.MinInt16 || raOff > math.MaxInt16 ||
		fpOff < math.MinInt16 || fpOff > math.MaxInt16 {
		// Beyond the map format's fields (frames of megabytes, which Go's
		// runtime has on arm64): must be marked, not truncated.
		return false, r.CFA == CFABadRule
	}
	if r.CFA != kind || int64(r.CFAOffset) != off {
		return true, false
	}
	switch {
	case ref.ra == "s" || raInReg:
		if r.RA != RALink {
			return true, false
		}
	case ref.ra == "u":
		// Undefined, or on arm64 also "no rule yet": RA still in x30.
		if r.RA != RAUndefined && !(arch == ARM64 && r.RA == RALink) {
			return true, false
		}
	default:
		if r.RA != RAOffset || int64(r.RAOffset) != raOff {
			return true, false
		}
	}
	if strings.HasPrefix(ref.fp, "c") {
		n, _ := strconv.ParseInt(ref.fp[1:], 10, 64)
		return true, r.FP == FPOffset && int64(r.FPOffset) == n
	}
	return true, r.FP == FPSame || r.FP == FPUndefined
}

type agreement struct {
	rows, supported, agreed, unsupported, mismatches int
}

// compareWithReadelf checks every readelf row against the table and every
// table row against readelf. The table is built from the CFI alone, also
// for a Go binary (whose NewTable comes from the pclntab).
func compareWithReadelf(t *testing.T, path string) agreement {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := NewTableFunc(f, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	ref := flatten(t, path, readelfFrames(t, path, tab.Arch))
	if len(ref) == 0 {
		t.Fatalf("%s: readelf printed no frame rows", path)
	}
	var a agreement
	check := func(at uint64, r Row, rr refRow) {
		a.rows++
		sup, ok := agree(tab.Arch, r, rr)
		if sup {
			a.supported++
		} else {
			a.unsupported++
		}
		if ok && sup {
			a.agreed++
		}
		if !ok {
			a.mismatches++
			if a.mismatches <= 10 {
				t.Errorf("%s at %#x: table row %+v, readelf %+v", path, at, r, rr)
			}
		}
	}
	for _, rr := range ref {
		r, found := tab.Lookup(rr.loc)
		if !found {
			r = Row{CFA: CFANone}
		}
		check(rr.loc, r, rr)
	}
	for _, r := range tab.Rows {
		i := sort.Search(len(ref), func(i int) bool { return ref[i].loc > r.PC })
		rr := refRow{loc: r.PC, cfa: "none"}
		if i > 0 {
			rr = ref[i-1]
		}
		check(r.PC, r, rr)
	}
	return a
}

func TestTableMatchesReadelf(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the test binaries are built for the host; the readelf column names checked are x86-64's")
	}
	paths := map[string]string{}
	for _, b := range testBinaries {
		paths[b.name] = buildBinary(t, b.name)
	}
	paths["libc.so.6"] = libcPath(t)
	names := []string{"chain-O2-omitfp", "chain-O1-fp", "chain-O2-debugframe", "chain-O2-nopie", "shapes-O2", "libc.so.6"}
	if !testing.Short() {
		paths["largest"] = largestBinaries(t, 1)[0].path
		names = append(names, "largest")
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			a := compareWithReadelf(t, paths[name])
			t.Logf("%s (%s): %d rows compared, %d supported (%d agree, %.2f%%), %d unsupported by readelf's rules, %d mismatches",
				name, paths[name], a.rows, a.supported, a.agreed, 100*float64(a.agreed)/float64(max(a.supported, 1)), a.unsupported, a.mismatches)
			if a.supported == 0 {
				t.Error("no supported rows compared")
			}
		})
	}
}

// TestARM64TableMatchesReadelf checks the arm64 rows against readelf on a Go
// program cross-compiled for linux/arm64 (the Go toolchain needs no arm64
// C toolchain). Go describes arm64 frames in .debug_frame: CFA = sp+N, the
// return address in x30 at entry and at CFA-N after the prologue.
func TestARM64TableMatchesReadelf(t *testing.T) {
	out := filepath.Join(buildDir, "goarm64")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/goarm64/main.go")
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build for arm64: %v\n%s", err, b)
	}
	a := compareWithReadelf(t, out)
	t.Logf("arm64 Go binary: %d rows compared, %d supported (%d agree), %d unsupported, %d mismatches",
		a.rows, a.supported, a.agreed, a.unsupported, a.mismatches)
	if a.supported == 0 {
		t.Error("no supported rows compared")
	}
}
