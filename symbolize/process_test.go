package symbolize

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/internal/proc"
)

// startWaiting runs a work binary that prints its own function addresses and
// then sleeps; it returns the process and the printed name=address pairs.
func startWaiting(t *testing.T, exe string, env ...string) (*exec.Cmd, map[string]uint64) {
	t.Helper()
	return startWaitingFiles(t, exe, nil, env...)
}

func startWaitingFiles(t *testing.T, exe string, files []*os.File, env ...string) (*exec.Cmd, map[string]uint64) {
	t.Helper()
	cmd := exec.Command(exe, "100", "wait")
	cmd.Env = append(os.Environ(), env...)
	cmd.ExtraFiles = files
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addrs := map[string]uint64{}
	sc := bufio.NewScanner(out)
	deadline := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		a, err := ParseAddress(val)
		if err != nil {
			t.Fatalf("bad address line %q", sc.Text())
		}
		addrs[name] = a
		if name == "nearest" && !strings.Contains(strings.Join(env, " "), "LD_LIBRARY_PATH") || name == "lib_loop" {
			break
		}
	}
	if len(addrs) == 0 {
		t.Fatal("the workload printed no addresses")
	}
	go io.Copy(io.Discard, out)
	return cmd, addrs
}

// processProfile builds a profile with one Location per address, in the
// mappings of pid that hold them, as the tracer does.
func processProfile(t *testing.T, pid int, addrs ...uint64) *profile.Profile {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all, err := proc.ParseMaps(f)
	if err != nil {
		t.Fatal(err)
	}
	var maps []*profile.Mapping
	for _, m := range all {
		if m.Executable() && m.Path != "" {
			maps = append(maps, &profile.Mapping{ID: uint64(len(maps) + 1), Start: m.Start, Limit: m.Limit, Offset: m.Offset, File: m.Path})
		}
	}
	p := &profile.Profile{Mapping: maps}
	for i, a := range addrs {
		var m *profile.Mapping
		for _, mm := range maps {
			if a >= mm.Start && a < mm.Limit {
				m = mm
			}
		}
		if m == nil {
			t.Fatalf("%#x is in no executable mapping of %d", a, pid)
		}
		p.Location = append(p.Location, &profile.Location{ID: uint64(i + 1), Address: a, Mapping: m})
	}
	return p
}

// processOpener is an Options.Open for the mappings of process pid, as the
// agent opens them: through a process table (internal/proc), by the mapping
// that starts where the profile's does.
func processOpener(t *testing.T, pid int) func(m *profile.Mapping) (*os.File, error) {
	t.Helper()
	tab := proc.NewTable()
	t.Cleanup(tab.Close)
	p, err := tab.Add(pid)
	if err != nil {
		t.Fatal(err)
	}
	return func(m *profile.Mapping) (*os.File, error) {
		pm := p.Find(m.Start)
		if pm == nil || pm.Start != m.Start {
			return nil, fmt.Errorf("%s: no mapping of process %d at %#x", m.File, pid, m.Start)
		}
		return tab.Open(pid, pm)
	}
}

// wantOuter checks that a location's outermost line is function fn in a
// file named file.
func wantOuter(t *testing.T, l *profile.Location, fn, file string) {
	t.Helper()
	if len(l.Line) == 0 {
		t.Fatalf("location %#x has no lines", l.Address)
	}
	out := l.Line[len(l.Line)-1]
	if out.Function.Name != fn || filepath.Base(out.Function.Filename) != file || out.Line == 0 {
		t.Fatalf("location %#x: outermost frame %s %s:%d, want %s in %s", l.Address, out.Function.Name, out.Function.Filename, out.Line, fn, file)
	}
}

func TestSymbolizeLivePIE(t *testing.T) {
	exe := workPIE(t)
	cmd, addrs := startWaiting(t, exe)
	pc := addrs["nearest"] + 4
	p := processProfile(t, cmd.Process.Pid, pc)
	if p.Location[0].Mapping.Start == 0 || p.Location[0].Mapping.Start < 0x10000 {
		t.Fatalf("PIE mapped at %#x: not relocated?", p.Location[0].Mapping.Start)
	}
	s := New(Options{})
	defer s.Close()
	if err := s.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	wantOuter(t, p.Location[0], "nearest", "work.c")
	m := p.Location[0].Mapping
	if m.BuildID == "" || !m.HasFunctions || !m.HasFilenames || !m.HasLineNumbers {
		t.Errorf("mapping not filled: %+v", m)
	}
	// The same through /proc/PID/map_files, and for a deleted executable.
	p2 := processProfile(t, cmd.Process.Pid, pc)
	s2 := New(Options{Open: processOpener(t, cmd.Process.Pid)})
	defer s2.Close()
	if err := s2.Symbolize(p2); err != nil {
		t.Fatal(err)
	}
	wantOuter(t, p2.Location[0], "nearest", "work.c")
}

// workPIE builds testdata/work.c as a position-independent executable.
func workPIE(t *testing.T) string {
	t.Helper()
	gcc := requireTool(t, "gcc")
	return built(t, "work-pie", func(dir, out string) {
		run(t, dir, gcc, "-O2", "-g", "-fPIE", "-pie", "-o", out, srcPath(t, "work.c"))
	})
}

// startDeleted runs a copy of workPIE named work-deleted, waiting, and
// deletes the copy: the process maps a file no path names any more.
func startDeleted(t *testing.T) (*exec.Cmd, map[string]uint64) {
	t.Helper()
	b, err := os.ReadFile(workPIE(t))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "work-deleted")
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd, addrs := startWaiting(t, tmp)
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	return cmd, addrs
}

func TestSymbolizeDeletedExecutable(t *testing.T) {
	cmd, addrs := startDeleted(t)
	p := processProfile(t, cmd.Process.Pid, addrs["nearest"]+4)
	if !strings.HasSuffix(p.Location[0].Mapping.File, " (deleted)") {
		t.Fatalf("mapping file %q is not marked deleted", p.Location[0].Mapping.File)
	}
	// Without the process's help the file is gone: the error names it.
	plain := New(Options{})
	defer plain.Close()
	if err := plain.Symbolize(processProfile(t, cmd.Process.Pid, addrs["nearest"]+4)); err == nil || !strings.Contains(err.Error(), "work-deleted") {
		t.Errorf("symbolizing a deleted file by path: err = %v, want one naming the file", err)
	}
	s := New(Options{Open: processOpener(t, cmd.Process.Pid)})
	defer s.Close()
	if err := s.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	wantOuter(t, p.Location[0], "nearest", "work.c")
}

// SymbolizeWith opens with the opener it is given (an agent passes each
// interval's own, which knows that interval's processes), not Options.Open,
// and keeps none of it: the next Symbolize opens by path again.
func TestSymbolizeWithOpener(t *testing.T) {
	cmd, addrs := startDeleted(t)
	s := New(Options{})
	defer s.Close()
	p := processProfile(t, cmd.Process.Pid, addrs["nearest"]+4)
	if err := s.SymbolizeWith(p, processOpener(t, cmd.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	wantOuter(t, p.Location[0], "nearest", "work.c")
	if err := s.Symbolize(processProfile(t, cmd.Process.Pid, addrs["nearest"]+4)); err == nil || !strings.Contains(err.Error(), "work-deleted") {
		t.Errorf("Symbolize after SymbolizeWith: err = %v, want the deleted file's (the opener was that profile's)", err)
	}
}

func TestSymbolizeSharedLibraryInProcess(t *testing.T) {
	gcc := requireTool(t, "gcc")
	lib, _ := sharedLibBuild(t)
	exe := built(t, "work-with-lib", func(dir, out string) {
		run(t, dir, gcc, "-O2", "-g", "-DWITH_LIB", "-o", out, srcPath(t, "work.c"), "-L"+dir, "-lwork")
	})
	cmd, addrs := startWaiting(t, exe, "LD_LIBRARY_PATH="+filepath.Dir(lib))
	if addrs["lib_loop"] == 0 {
		t.Fatal("no lib_loop address printed")
	}
	p := processProfile(t, cmd.Process.Pid, addrs["lib_loop"], addrs["nearest"]+4)
	s := New(Options{})
	defer s.Close()
	if err := s.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	wantOuter(t, p.Location[0], "lib_loop", "lib.c")
	wantOuter(t, p.Location[1], "nearest", "work.c")
	if !strings.HasSuffix(p.Location[0].Mapping.File, "libwork.so") {
		t.Errorf("lib_loop in mapping %q", p.Location[0].Mapping.File)
	}
}

func TestSymbolizeBadFileCostsOnlyItsFrames(t *testing.T) {
	exe := workPIE(t)
	cmd, addrs := startWaiting(t, exe)
	p := processProfile(t, cmd.Process.Pid, addrs["nearest"]+4)
	bad := filepath.Join(t.TempDir(), "garbage.so")
	os.WriteFile(bad, []byte("\x7fELF this is not an ELF file at all, just bytes that start like one................"), 0o644)
	bm := &profile.Mapping{ID: 99, Start: 0x1000, Limit: 0x2000, File: bad}
	missing := &profile.Mapping{ID: 100, Start: 0x3000, Limit: 0x4000, File: "/nonexistent/lib.so"}
	p.Mapping = append(p.Mapping, bm, missing)
	p.Location = append(p.Location,
		&profile.Location{ID: 2, Address: 0x1100, Mapping: bm},
		&profile.Location{ID: 3, Address: 0x3100, Mapping: missing})
	s := New(Options{})
	defer s.Close()
	err := s.Symbolize(p)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "/nonexistent/lib.so") {
		t.Fatalf("err = %v, want errors naming %s and /nonexistent/lib.so", err, bad)
	}
	wantOuter(t, p.Location[0], "nearest", "work.c")
	if len(p.Location[1].Line) != 0 || p.Location[1].Address != 0x1100 || len(p.Location[2].Line) != 0 {
		t.Errorf("bad mappings' locations changed: %+v %+v", p.Location[1], p.Location[2])
	}
}

// TestSymbolizeLiveGo symbolizes a stripped Go process, non-PIE and PIE,
// from its pclntab: main.nearest and the functions inlined into it.
func TestSymbolizeLiveGo(t *testing.T) {
	for _, mode := range [][]string{nil, {"-buildmode=pie"}} {
		t.Run(strings.Join(append([]string{"go"}, mode...), " "), func(t *testing.T) {
			stripped, full := goBuild(true, mode...)(t)
			cmd, addrs := startWaiting(t, stripped)
			lo, size := addrs["nearest"], elfSymbol(t, full, "main.nearest").Size
			var pcs []uint64
			for a := lo; a < lo+size; a++ {
				pcs = append(pcs, a)
			}
			p := processProfile(t, cmd.Process.Pid, pcs...)
			s := New(Options{Open: processOpener(t, cmd.Process.Pid)})
			defer s.Close()
			if err := s.Symbolize(p); err != nil {
				t.Fatal(err)
			}
			inlined := false
			for _, l := range p.Location {
				wantOuter(t, l, "main.nearest", "main.go")
				if len(l.Line) == 3 && l.Line[0].Function.Name == "main.sq" && l.Line[1].Function.Name == "main.dist2" {
					inlined = true
				}
			}
			if !inlined {
				t.Error("no address shows main.sq inlined in main.dist2 in main.nearest")
			}
			if m := p.Location[0].Mapping; m.BuildID == "" || !m.HasInlineFrames {
				t.Errorf("mapping %+v: want a build ID and inline frames", m)
			}
		})
	}
}

// elfSymbols returns the .symtab of the ELF file at path, read by debug/elf
// (not by the code under test).
func elfSymbols(t testing.TB, path string) []elf.Symbol {
	t.Helper()
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	syms, err := ef.Symbols()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return syms
}

// elfSymbol returns the symbol called name in the ELF file at path.
func elfSymbol(t *testing.T, path, name string) elf.Symbol {
	t.Helper()
	for _, s := range elfSymbols(t, path) {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("%s: no symbol %s", path, name)
	return elf.Symbol{}
}

func TestSymbolizeDemanglesCXX(t *testing.T) {
	path, _ := cxxBuild("g++", "-O2", "-g")(t)
	o, err := OpenObject(path)
	if err != nil {
		t.Fatal(err)
	}
	var addr uint64
	for _, s := range o.syms.syms {
		if strings.Contains(s.name, "total_area") {
			addr = s.addr
		}
	}
	o.Close()
	if addr == 0 {
		t.Fatal("no total_area symbol")
	}
	m := &profile.Mapping{ID: 1, Start: 0x1000000, Limit: 0x2000000, File: path}
	p := &profile.Profile{Mapping: []*profile.Mapping{m}, Location: []*profile.Location{{ID: 1, Address: m.Start + addr, Mapping: m}}}
	s := New(Options{})
	defer s.Close()
	if err := s.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	f := p.Location[0].Line[len(p.Location[0].Line)-1].Function
	if f.Name != "ember::test::total_area(std::vector<ember::test::Shape*, std::allocator<ember::test::Shape*>> const&)" || !strings.HasPrefix(f.SystemName, "_ZN5ember4test10total_area") {
		t.Errorf("function %q, system name %q", f.Name, f.SystemName)
	}
}

// TestSymbolizeOpensEachFileOnce: mappings of one file are symbolized one
// after another, so that a cache too small to keep two objects (a one-shot
// record's) indexes each file once, however the profile orders
// its mappings (here two files' mappings alternate, as libc's does with
// each process's executable in a whole-system profile).
func TestSymbolizeOpensEachFileOnce(t *testing.T) {
	_, goBin := goBuild(false)(t)
	files := []string{goBin, "/usr/lib/x86_64-linux-gnu/libc.so.6"}
	if _, err := os.Stat(files[1]); err != nil {
		files[1] = goBin + "-copy"
		b, err := os.ReadFile(goBin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(files[1], b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := &profile.Profile{}
	for i := range 4 {
		path := files[i%2]
		ef, err := elf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var text *elf.Prog
		for _, pr := range ef.Progs {
			if pr.Type == elf.PT_LOAD && pr.Flags&elf.PF_X != 0 {
				text = pr
			}
		}
		ef.Close()
		base := uint64(0x7f0000000000) + uint64(i)<<32
		m := &profile.Mapping{ID: uint64(i + 1), Start: base + text.Vaddr&^0xfff, Limit: base + text.Vaddr + text.Memsz, Offset: text.Off &^ 0xfff, File: path}
		p.Mapping = append(p.Mapping, m)
		a := textAddresses(t, path, 1+i/2)[i/2]
		p.Location = append(p.Location, &profile.Location{ID: uint64(i + 1), Address: base + a, Mapping: m})
	}
	s := New(Options{CacheBytes: 1})
	defer s.Close()
	if err := s.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	for _, l := range p.Location {
		if len(l.Line) == 0 || l.Line[0].Function == nil || l.Line[0].Function.Name == "" {
			t.Errorf("%s %#x not named", l.Mapping.File, l.Address)
		}
	}
	if n := s.parsed.Load(); n != 2 {
		t.Errorf("%d objects indexed for two files", n)
	}
}
