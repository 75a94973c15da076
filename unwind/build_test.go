package unwind

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Test binaries are built once per test run from the sources in testdata.
// Missing compilers fail the tests: CI installs gcc and g++.

var buildDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ember-unwind-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type testBinary struct {
	name     string
	compiler string
	src      string
	flags    []string
}

var testBinaries = []testBinary{
	// No frame pointers anywhere: only tables can walk this.
	{"chain-O2-omitfp", "gcc", "chain.c", []string{"-O2", "-fomit-frame-pointer"}},
	// Frame pointers, but leaves frameless: a frame-pointer walk loses the
	// caller of every leaf.
	{"chain-O1-fp", "gcc", "chain.c", []string{"-O1", "-fno-omit-frame-pointer", "-momit-leaf-frame-pointer"}},
	// The program's own code described by .debug_frame only (crt objects
	// and the PLT keep .eh_frame).
	{"chain-O2-debugframe", "gcc", "chain.c", []string{"-O2", "-g", "-fomit-frame-pointer", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables"}},
	// A position-dependent executable: load bias 0.
	{"chain-O2-nopie", "gcc", "chain.c", []string{"-O2", "-fomit-frame-pointer", "-no-pie", "-fno-pie"}},
	// C++: LSDA-carrying "zPLR" CIEs, exceptions, templates.
	{"shapes-O2", "g++", "shapes.cc", []string{"-O2"}},
}

var builds sync.Map // name -> *buildResult

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// buildBinary compiles the test binary called name and returns its path.
func buildBinary(tb testing.TB, name string) string {
	tb.Helper()
	var bin *testBinary
	for i := range testBinaries {
		if testBinaries[i].name == name {
			bin = &testBinaries[i]
		}
	}
	if bin == nil {
		tb.Fatalf("no test binary %q", name)
	}
	v, _ := builds.LoadOrStore(name, &buildResult{})
	res := v.(*buildResult)
	res.once.Do(func() {
		out := filepath.Join(buildDir, name)
		src, err := filepath.Abs(filepath.Join("testdata", bin.src))
		if err != nil {
			res.err = err
			return
		}
		args := append(append([]string{}, bin.flags...), "-o", out, src)
		cmd := exec.Command(bin.compiler, args...)
		if b, err := cmd.CombinedOutput(); err != nil {
			res.err = fmt.Errorf("%s %v: %v\n%s", bin.compiler, args, err, b)
			return
		}
		res.path = out
	})
	if res.err != nil {
		tb.Fatal(res.err)
	}
	return res.path
}

// libcPath is the C library of this machine, found through the dynamic
// loader's view of a test binary.
func libcPath(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{
		"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6",
		"/lib/aarch64-linux-gnu/libc.so.6", "/usr/lib64/libc.so.6", "/lib64/libc.so.6",
	} {
		if f, err := elf.Open(p); err == nil {
			f.Close()
			return p
		}
	}
	tb.Fatal("libc.so.6 not found")
	return ""
}
