package symbolize

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emberprof/ember/internal/testutil"
)

// TestShownNamesGlibc: glibc's exports are named as programs call them. Its
// debug file (libc6-dbg, installed by make deps) defines them under versioned
// and internal aliases (pthread_create@@GLIBC_2.34, _IO_fopen@@GLIBC_2.2.5,
// cfree@GLIBC_2.2.5, __libc_realloc); profiles show the plain name while
// RawFrames keeps llvm-symbolizer's choice.
func TestShownNamesGlibc(t *testing.T) {
	const libc = "/lib/x86_64-linux-gnu/libc.so.6"
	if _, err := os.Stat(libc); err != nil {
		testutil.SkipOrFail(t, "%s: %v (the test knows amd64's path)", libc, err)
	}
	o, err := OpenObject(libc)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.DebugFile() == "" {
		testutil.SkipOrFail(t, "no debug file for %s: install libc6-dbg (make deps)", libc)
	}
	ef, err := elf.Open(libc)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	dyn, err := ef.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"pthread_create": true, "clock_nanosleep": true, "fopen": true, "free": true, "realloc": true, "clock_gettime": true, "malloc": true}
	versioned := 0
	for _, s := range dyn {
		if !want[s.Name] || s.Value == 0 {
			continue
		}
		delete(want, s.Name)
		raw, _ := o.RawFrames(s.Value)
		shown, _ := o.Frames(s.Value)
		if len(raw) == 0 || len(shown) == 0 {
			t.Errorf("%s: no frames", s.Name)
			continue
		}
		r, g := raw[len(raw)-1].Function, shown[len(shown)-1].Function
		t.Logf("%-16s raw %-30s shown %s", s.Name, r, g)
		if strings.Contains(r, "@") {
			versioned++
		}
		if g != s.Name {
			t.Errorf("%s shown as %q, want %q", s.Name, g, s.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("not exported by %s: %v", libc, want)
	}
	if versioned == 0 {
		t.Errorf("no versioned name among the raw ones: the debug file no longer tests version stripping")
	}
}

// TestShownNamesNoSTTFile: a function without DWARF gets no file from the
// STT_FILE symbol before it (an object or source file name, shown as FILE:0).
func TestShownNamesNoSTTFile(t *testing.T) {
	cc := requireTool(t, "gcc")
	dir := t.TempDir()
	src := filepath.Join(dir, "plain.c")
	if err := os.WriteFile(src, []byte("static int __attribute__((noinline)) hidden(int x) { return x * 3 + 1; }\nint main(int argc, char **argv) { return hidden(argc); }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "plain")
	run(t, dir, cc, "-O2", "-o", out, src)
	addr := elfSymbol(t, out, "hidden").Value
	o, err := OpenObject(out)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	raw, _ := o.RawFrames(addr)
	shown, _ := o.Frames(addr)
	if len(raw) != 1 || raw[0].File != "plain.c" {
		t.Fatalf("raw frames %+v: want hidden in plain.c, as llvm-symbolizer has it", raw)
	}
	if len(shown) != 1 || shown[0].Function != "hidden" || shown[0].File != "" || shown[0].Line != 0 {
		t.Errorf("shown frames %+v, want hidden with no file", shown)
	}
}

// rustfiltNames are names rustfilt prints for functions of
// testdata/rustwork/main.rs (crate "main") and the std code it calls: no
// hash, no crate disambiguator, and v0's generic arguments, which legacy
// symbols do not carry (a legacy impl names its generic parameters).
var rustfiltNames = map[string][]string{
	"legacy": {"main::sum_squares", "main::total_area", "main::main",
		"<main::Square as main::Shape>::area", "core::ptr::drop_in_place<alloc::boxed::Box<dyn main::Shape>>"},
	"v0": {"main::sum_squares::<i64>", "main::sum_squares::<f64>", "main::total_area", "main::main",
		"<main::Square as main::Shape>::area"},
}

// demangleV0Defect reports a v0 name that github.com/ianlancetaylor/demangle
// cannot demangle as rustfilt does: its decimal-number parser reads the "0"
// of an unnamed component (a closure, {closure#N}, or a const block, {K#N})
// and the length digits of the component after it as one number, so the
// name comes out with its closures renumbered or, more often, not at all
// (std::panicking::default_hook::{closure#0}::FIRST_PANIC, mangled
// ...default_hook011FIRST_PANIC). Telling such names apart needs a v0
// parser; rustfilt's answer, with an unnamed component in it, does.
func demangleV0Defect(mangled, rustfilt string) bool {
	return strings.HasPrefix(mangled, "_R") && (strings.Contains(rustfilt, "{closure#") || strings.Contains(rustfilt, "{K#"))
}

// rustfilt demangles names with the reference demangler, rustfilt (Debian's
// package, which make deps installs), one name a line.
func rustfilt(t *testing.T, names []string) []string {
	t.Helper()
	cmd := exec.Command(requireTool(t, "rustfilt"))
	cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("rustfilt: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(names) {
		t.Fatalf("rustfilt printed %d lines for %d names", len(lines), len(names))
	}
	return lines
}

var rustHash = regexp.MustCompile(`::h[0-9a-f]{16}|\$[A-Z]+\$|\[[0-9a-f]+\]`)

// TestRustNamesAsRustfilt builds the Rust workload with rustc's default
// (legacy) mangling and with v0 and requires the shown names of its
// functions to be rustfilt's: those known from the source's names, and for
// every Rust symbol of the binary (std's too) what rustfilt itself prints.
func TestRustNamesAsRustfilt(t *testing.T) {
	if _, err := exec.LookPath("rustc"); err != nil {
		if _, err := os.Stat("/root/.cargo/bin/rustc"); err != nil {
			testutil.SkipOrFail(t, "rustc is not installed (not in PATH nor /root/.cargo/bin)")
		}
	}
	for _, mangling := range []string{"legacy", "v0"} {
		t.Run(mangling, func(t *testing.T) {
			path, _ := rustBuild(mangling)(t)
			syms := elfSymbols(t, path)
			o, err := OpenObject(path)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			shown := map[string]bool{}
			for _, s := range syms {
				if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 {
					continue
				}
				if frames, _ := o.Frames(s.Value); len(frames) > 0 {
					shown[frames[len(frames)-1].Function] = true
				}
			}
			for _, n := range rustfiltNames[mangling] {
				if !shown[n] {
					t.Errorf("no function shown as %q (rustfilt's name)", n)
				}
			}
			// Every Rust name the binary defines is free of hashes and
			// escapes once demangled, and is what rustfilt prints for it.
			var mangled []string
			for _, s := range syms {
				if !isRust(s.Name) {
					continue
				}
				mangled = append(mangled, s.Name)
				if d := demangleName(s.Name); rustHash.MatchString(d) {
					t.Errorf("%s demangled as %q, which keeps a hash or an escape", s.Name, d)
				}
			}
			want := rustfilt(t, mangled)
			same, defect := 0, 0
			for i, name := range mangled {
				got := demangleName(name)
				switch {
				case got == want[i]:
					same++
				case demangleV0Defect(name, want[i]):
					// Logged, not failed: see demangleV0Defect.
					defect++
					t.Logf("demangle package's v0 defect: %s: %q, rustfilt %q", name, got, want[i])
				default:
					t.Errorf("%s: %q, rustfilt %q", name, got, want[i])
				}
			}
			t.Logf("%d of %d Rust symbols demangled as rustfilt does; %d differ by the demangle package's v0 defect", same, len(mangled), defect)
			if len(mangled) < 50 {
				t.Errorf("only %d Rust symbols in the binary", len(mangled))
			}
		})
	}
}

// TestGoSymbolsReadWhenNeeded: a Go binary's functions are named from its
// pclntab, and its symbol table (tens of thousands of symbols) is read only
// when an address outside the Go code needs it: after naming main.main it is
// still unread; an address only the symbol table names (a variable) reads
// it, and is named from it.
func TestGoSymbolsReadWhenNeeded(t *testing.T) {
	_, full := goBuild(false)(t)
	syms := elfSymbols(t, full)
	var mainAddr, varAddr uint64
	var varName string
	for _, s := range syms {
		switch {
		case s.Name == "main.main":
			mainAddr = s.Value
		case varAddr == 0 && elf.ST_TYPE(s.Info) == elf.STT_OBJECT && s.Size >= 8 && strings.HasPrefix(s.Name, "runtime."):
			varAddr, varName = s.Value, s.Name
		}
	}
	if mainAddr == 0 || varAddr == 0 {
		t.Fatalf("main.main at %#x, a runtime variable at %#x", mainAddr, varAddr)
	}
	o, err := OpenObject(full)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.loadSyms == nil {
		t.Fatal("the symbol table was read at open")
	}
	frames, err := o.ShownFrames(mainAddr)
	if err != nil || len(frames) == 0 || frames[len(frames)-1].Function != "main.main" {
		t.Fatalf("main.main's address: %+v, %v", frames, err)
	}
	if o.loadSyms == nil {
		t.Error("the symbol table was read for an address the pclntab names")
	}
	frames, _ = o.ShownFrames(varAddr)
	if len(frames) == 0 || frames[len(frames)-1].Function != varName {
		t.Errorf("%s's address (%#x): %+v", varName, varAddr, frames)
	}
	if o.loadSyms != nil || o.syms.empty() {
		t.Error("the symbol table was not read for an address only it names")
	}
}
