package symbolize

import (
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/pprof/profile"
)

// compareObjects checks that the stripped object gives the same frames as
// the unstripped one at sampled addresses.
func compareObjects(t *testing.T, stripped *Object, full string, n int) {
	t.Helper()
	ref, err := OpenObject(full)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	same := 0
	addrs := textAddresses(t, full, n)
	for _, a := range addrs {
		g, _ := stripped.Frames(a)
		w, _ := ref.Frames(a)
		if ok, _ := sameFrames(g, w, false); ok {
			same++
		}
	}
	if same != len(addrs) {
		t.Errorf("%d of %d addresses symbolize as in the unstripped binary", same, len(addrs))
	}
}

func TestDebugFileByBuildID(t *testing.T) {
	gcc := requireTool(t, "gcc")
	objcopy := requireTool(t, "objcopy")
	full := built(t, "buildid-full", func(dir, out string) {
		run(t, dir, gcc, "-O2", "-g", "-Wl,--build-id=sha1", "-o", out, srcPath(t, "work.c"))
	})
	o, err := OpenObject(full)
	if err != nil {
		t.Fatal(err)
	}
	id := o.BuildID()
	o.Close()
	if len(id) != 40 {
		t.Fatalf("build ID %q", id)
	}
	debugDir := t.TempDir()
	dbg := filepath.Join(debugDir, ".build-id", id[:2], id[2:]+".debug")
	os.MkdirAll(filepath.Dir(dbg), 0o755)
	stripped := filepath.Join(t.TempDir(), "work-stripped")
	run(t, "", objcopy, "--only-keep-debug", full, dbg)
	run(t, "", objcopy, "--strip-all", full, stripped) // no debuglink: only the build ID leads to it
	f, err := os.Open(stripped)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	so, err := NewObject(f, stripped, []string{debugDir})
	if err != nil {
		t.Fatal(err)
	}
	defer so.Close()
	if so.DebugFile() != dbg {
		t.Fatalf("debug file %q, want %q", so.DebugFile(), dbg)
	}
	compareObjects(t, so, full, 500)

	// Through Symbolize and Options.DebugDirs, with a cache keyed by the build ID.
	s := New(Options{DebugDirs: []string{debugDir}})
	defer s.Close()
	addr := textAddresses(t, full, 1)[0]
	m := &profile.Mapping{ID: 1, Start: 0x555500000000, Limit: 0x555500100000, File: stripped}
	// A file-offset-0 mapping of the whole file: runtime = base + vaddr for
	// this layout (first PT_LOAD at offset 0, vaddr 0).
	p := &profile.Profile{Mapping: []*profile.Mapping{m}, Location: []*profile.Location{{ID: 1, Address: m.Start + addr, Mapping: m}}}
	if err := s.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	if m.BuildID != id || len(p.Location[0].Line) == 0 || p.Location[0].Line[0].Line == 0 {
		t.Errorf("build ID %q, lines %+v", m.BuildID, p.Location[0].Line)
	}
}

func TestDebugLinkCRCChecked(t *testing.T) {
	path, full := debuglinkBuild(t)
	dbg := path + ".debug"
	b, err := os.ReadFile(dbg)
	if err != nil {
		t.Fatal(err)
	}
	// A copy of the binary beside a debug file whose CRC does not match.
	dir := t.TempDir()
	exe := filepath.Join(dir, filepath.Base(path))
	bin, _ := os.ReadFile(path)
	os.WriteFile(exe, bin, 0o755)
	b[len(b)-1] ^= 0xff
	os.WriteFile(filepath.Join(dir, filepath.Base(dbg)), b, 0o644)
	o, err := OpenObject(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.DebugFile() != "" {
		t.Errorf("used debug file %q despite a CRC mismatch", o.DebugFile())
	}
	good, err := OpenObject(path)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if good.DebugFile() != dbg {
		t.Errorf("debug file %q, want %q", good.DebugFile(), dbg)
	}
	compareObjects(t, good, full, 300)
}

// TestMiniDebugInfo builds a MiniDebugInfo binary the way Fedora does: the
// symbol table of the local functions, xz-compressed, in .gnu_debugdata of a
// fully stripped binary.
func TestMiniDebugInfo(t *testing.T) {
	gcc := requireTool(t, "gcc")
	objcopy := requireTool(t, "objcopy")
	xzTool := requireTool(t, "xz")
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	run(t, dir, gcc, "-O2", "-o", full, srcPath(t, "work.c"))
	mini := filepath.Join(dir, "mini")
	run(t, dir, objcopy, "--only-keep-debug", "--remove-section=.comment", full, mini)
	run(t, dir, xzTool, "-k", mini)
	stripped := filepath.Join(dir, "stripped")
	run(t, dir, objcopy, "--strip-all", "--add-section", ".gnu_debugdata="+mini+".xz", full, stripped)
	o, err := OpenObject(stripped)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ef, err := elf.Open(full)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	syms, _ := ef.Symbols()
	checked := 0
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Size == 0 || elf.ST_BIND(s.Info) != elf.STB_LOCAL || strings.Contains(s.Name, "tm_clones") {
			continue
		}
		f, _ := o.Frames(s.Value + s.Size/2)
		if len(f) == 0 || f[len(f)-1].Function != s.Name {
			t.Errorf("%s: got %+v", s.Name, f)
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no local functions to check")
	}
}

func TestGoStrippedInlineTree(t *testing.T) {
	stripped, full := goBuild(true)(t)
	o, err := OpenObject(stripped)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ef, err := elf.Open(full)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	syms, _ := ef.Symbols()
	var lo, hi uint64
	for _, s := range syms {
		if s.Name == "main.nearest" {
			lo, hi = s.Value, s.Value+s.Size
		}
	}
	if lo == 0 {
		t.Fatal("no main.nearest in the unstripped binary")
	}
	var chain []string
	for a := lo; a < hi && chain == nil; a++ {
		f, err := o.Frames(a)
		if err != nil {
			t.Fatal(err)
		}
		if len(f) == 3 {
			for _, fr := range f {
				chain = append(chain, fr.Function)
				if !strings.HasSuffix(fr.File, "gowork/main.go") || fr.Line == 0 {
					t.Errorf("frame %+v", fr)
				}
			}
		}
	}
	if strings.Join(chain, " ") != "main.sq main.dist2 main.nearest" {
		t.Errorf("no address of main.nearest shows sq inlined in dist2 inlined in nearest; got %v", chain)
	}
}

func TestCacheBudget(t *testing.T) {
	a, _ := cBuild("gcc", "-O2", "-gdwarf-4")(t)
	b, _ := cBuild("clang-19", "-O2", "-gdwarf-5")(t)
	s := New(Options{CacheBytes: 1}) // room for only the most recent object
	defer s.Close()
	for round := 0; round < 2; round++ {
		for _, path := range []string{a, b} {
			addr := textAddresses(t, path, 1)[0]
			m := &profile.Mapping{ID: 1, Start: 0x1000000, Limit: 0x2000000, File: path}
			p := &profile.Profile{Mapping: []*profile.Mapping{m}, Location: []*profile.Location{{ID: 1, Address: m.Start + addr, Mapping: m}}}
			if err := s.Symbolize(p); err != nil {
				t.Fatal(err)
			}
			if len(p.Location[0].Line) == 0 {
				t.Fatalf("%s: nothing at %#x", path, addr)
			}
			if n, _ := s.CacheStats(); n != 1 {
				t.Fatalf("cache holds %d objects, budget allows 1", n)
			}
		}
	}
	big := New(Options{})
	defer big.Close()
	for _, path := range []string{a, b, a} {
		m := &profile.Mapping{ID: 1, Start: 0x1000000, Limit: 0x2000000, File: path}
		p := &profile.Profile{Mapping: []*profile.Mapping{m}, Location: []*profile.Location{{ID: 1, Address: m.Start + 0x1100, Mapping: m}}}
		big.Symbolize(p)
	}
	if n, bytes := big.CacheStats(); n != 2 || bytes <= 0 {
		t.Errorf("cache holds %d objects, %d bytes; want 2", n, bytes)
	}
	// Found again by build ID and by file identity, without parsing again.
	o, err := OpenObject(a)
	if err != nil {
		t.Fatal(err)
	}
	id := o.BuildID()
	o.Close()
	for _, bid := range []string{"", id} {
		m := &profile.Mapping{ID: 1, Start: 0x1000000, Limit: 0x2000000, File: a, BuildID: bid}
		p := &profile.Profile{Mapping: []*profile.Mapping{m}, Location: []*profile.Location{{ID: 1, Address: m.Start + 0x1100, Mapping: m}}}
		big.Symbolize(p)
	}
	if n := big.parsed.Load(); n != 2 {
		t.Errorf("%d objects parsed for 2 files", n)
	}
}

// TestBadDWARFCostsOnlyItsFrames corrupts the abbreviations of a binary: the
// symbol table still names functions, and the error names the file.
func TestBadDWARFCostsOnlyItsFrames(t *testing.T) {
	path, _ := cBuild("gcc", "-O2", "-gdwarf-5")(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	sec := ef.Section(".debug_abbrev")
	ef.Close()
	for i := sec.Offset; i < sec.Offset+sec.Size; i++ {
		b[i] = 0xff
	}
	bad := filepath.Join(t.TempDir(), "bad-dwarf")
	os.WriteFile(bad, b, 0o755)
	o, err := OpenObject(bad)
	if err != nil {
		t.Fatalf("a binary with bad DWARF but a good symbol table: %v", err)
	}
	defer o.Close()
	named, errs := 0, 0
	for _, a := range textAddresses(t, path, 200) {
		f, err := o.Frames(a)
		if len(f) > 0 && f[len(f)-1].Function != "" {
			named++
		}
		if err != nil {
			errs++
			if !strings.Contains(err.Error(), bad) {
				t.Fatalf("error %q does not name the file", err)
			}
		}
	}
	if named != 200 || (errs == 0 && o.Err() == nil) {
		t.Errorf("%d of 200 addresses named, %d errors, open error %v", named, errs, o.Err())
	}
}

func TestBuildIDMismatchRefused(t *testing.T) {
	path, _ := cBuild("gcc", "-O2", "-gdwarf-4")(t)
	m := &profile.Mapping{ID: 1, Start: 0x1000000, Limit: 0x2000000, File: path, BuildID: "0123456789abcdef0123456789abcdef01234567"}
	p := &profile.Profile{Mapping: []*profile.Mapping{m}, Location: []*profile.Location{{ID: 1, Address: m.Start + 0x1100, Mapping: m}}}
	s := New(Options{})
	defer s.Close()
	if err := s.Symbolize(p); !errors.Is(err, ErrBuildIDMismatch) || len(p.Location[0].Line) != 0 {
		t.Errorf("err %v, lines %v: want ErrBuildIDMismatch and no lines", err, p.Location[0].Line)
	}
}
