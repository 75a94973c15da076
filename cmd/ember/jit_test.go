package main

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/internal/agent"
	"github.com/emberprof/ember/internal/testutil"
)

// JIT runtimes under the table walker: their JIT code (V8's compiled
// JavaScript, CPython's -X perf trampolines) lies in anonymous executable
// memory that no table covers and that /tmp/perf-PID.map names. The walker
// takes frame-pointer steps through it and back into the runtime's tabled
// code, so a sample in the hot function carries its JavaScript or Python
// callers and the runtime's C/C++ frames down to its main. The runtimes
// exit before Ember symbolizes: the perf map is read through the file held
// since the drain that saw the JIT code, not through /proc/PID/root.

// jitFrame matches the perf-map names of the runtimes' frames: V8's
// "JS:*hot /path/chain.js:5:13" (the mark says which tier: * optimized,
// ~ interpreted, ^ Sparkplug, + Maglev) and CPython's
// "py::hot:/path/chain.py".
var jitFrame = regexp.MustCompile(`^(?:JS:[*~^+]?(\S*) |py::([^:]+):)`)

// jitNames returns a sample's frames with JIT frames reduced to their
// function's name, so that hasChain matches them as it matches C frames.
func jitNames(s *profile.Sample) []string {
	frames := testutil.Frames(s)
	for i, f := range frames {
		if m := jitFrame.FindStringSubmatch(f); m != nil {
			frames[i] = m[1] + m[2]
		}
	}
	return frames
}

// jitChainShare returns, over the samples whose stack holds chain[0], the
// share that hold the whole chain, that number of samples, and how many of
// them were walked with frame pointers before the tables loaded.
func jitChainShare(t *testing.T, p *profile.Profile, chain []string) (share float64, hot, fallback int64) {
	t.Helper()
	idx := testutil.SampleIndex(p, "samples")
	var full int64
	for _, s := range p.Sample {
		frames := jitNames(s)
		c, h := hasChain(frames, chain)
		if !h {
			continue
		}
		v := s.Value[idx]
		hot += v
		if c {
			full += v
		}
		if slices.Contains(frames, agent.FPFallbackFrame) {
			fallback += v
		}
	}
	if hot == 0 {
		return 0, 0, 0
	}
	return float64(full) / float64(hot), hot, fallback
}

// checkJITChains records command (which runs for a few seconds of CPU time)
// with the table walker and requires 95% of the samples in chain[0] to hold
// the whole chain.
func checkJITChains(t *testing.T, dir string, chain []string, command ...string) {
	t.Helper()
	out := filepath.Join(dir, "jit.pb.gz")
	args := append([]string{"record", "-F", "499", "--unwind", "tables", "-o", out, "--"}, command...)
	stderr := runEmber(t, dir, args...)
	if (strings.Contains(stderr, "perf-") || strings.Contains(stderr, "jit-")) && strings.Contains(stderr, "unsymbolized") {
		t.Errorf("the perf map or jitdump file was not read after the runtime exited:\n%s", stderr)
	}
	p := readProfile(t, out)
	share, hot, fallback := jitChainShare(t, p, chain)
	t.Logf("whole chain %s in %.2f%% of %d samples in %s (%d of them walked with frame pointers before the tables loaded)",
		strings.Join(chain, " <- "), 100*share, hot, chain[0], fallback)
	if hot < 300 {
		t.Fatalf("%d samples in %s; want 300 for a 5%% bar to mean something", hot, chain[0])
	}
	if share < 0.95 {
		logIncompleteJIT(t, p, chain)
		t.Errorf("whole chain in %.2f%% of samples, want >= 95%%", 100*share)
	}
}

// logIncompleteJIT logs the commonest stacks that hold chain[0] but not
// the whole chain.
func logIncompleteJIT(t *testing.T, p *profile.Profile, chain []string) {
	t.Helper()
	counts := map[string]int64{}
	for _, s := range p.Sample {
		if c, h := hasChain(jitNames(s), chain); h && !c {
			counts[strings.Join(testutil.Frames(s), " <- ")] += s.Value[0]
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return int(counts[b] - counts[a]) })
	for _, k := range keys[:min(5, len(keys))] {
		t.Logf("incomplete x%d: %s", counts[k], k)
	}
}

// TestNodeJITChains: node --perf-basic-prof runs testdata/jit/chain.js, whose
// hot() is called through level3 <- level2 <- level1. Interpreted frames
// get a native frame of their own (--interpreted-frames-native-stack) and
// inlining is off, so each JavaScript function is one frame with a name in
// the perf map; node's main tail-calls node::Start, which is the runtime's
// main on the stack.
func TestNodeJITChains(t *testing.T) {
	testutil.RequireRoot(t)
	node := testutil.RequireTool(t, "node")
	dir := t.TempDir()
	script := testutil.Testdata("jit", "chain.js")
	chain := []string{"hot", "level3", "level2", "level1", "node::Start", "__libc_start_call_main"}
	checkJITChains(t, dir, chain, node, "--perf-basic-prof", "--interpreted-frames-native-stack", "--no-turbo-inlining", script, "4")
}

// TestPythonPerfTrampolineChains: CPython 3.12+ with -X perf runs
// testdata/jit/chain.py. Every Python call enters the interpreter through a
// trampoline of its own, in anonymous executable memory named
// "py::FUNCTION:FILE" in the perf map; the walker crosses each with a
// frame-pointer step, so the Python callers of hot() are on the stack, down
// to the module and the interpreter's main (python's main tail-calls
// Py_BytesMain, which is on the stack in its place).
func TestPythonPerfTrampolineChains(t *testing.T) {
	testutil.RequireRoot(t)
	python := testutil.PerfPython(t, 12)
	dir := t.TempDir()
	script := testutil.Testdata("jit", "chain.py")
	checkJITChains(t, dir, pythonChain, python, "-X", "perf", script, "4")
}

// pythonChain is chain.py's hot() and its callers, down to the
// interpreter's main (python's main tail-calls Py_BytesMain).
var pythonChain = []string{"hot", "level3", "level2", "level1", "<module>", "Py_RunMain", "Py_BytesMain", "__libc_start_call_main"}

// TestPythonPerfJitChains: CPython 3.13+ with -X perf_jit runs
// testdata/jit/chain.py. The trampolines are those of -X perf, but named in
// a jitdump file, /tmp/jit-PID.dump, which the interpreter maps executable
// (so that perf finds it in its mappings) and writes through stdio: the
// records of the last trampolines reach the file only at exit, and Ember
// reads it, through the descriptor held since the drain that saw the JIT
// code, after the interpreter exited. The walk is the -X perf one: a
// frame-pointer step through each trampoline (no table; the jitdump's
// unwinding information is not used), which skips CPython's
// py_trampoline_evaluator, the C function that calls the trampoline, and
// no Python frame.
func TestPythonPerfJitChains(t *testing.T) {
	testutil.RequireRoot(t)
	python := testutil.PerfPython(t, 13)
	dir := t.TempDir()
	script := testutil.Testdata("jit", "chain.py")
	checkJITChains(t, dir, pythonChain, python, "-X", "perf_jit", script, "4")
}

// TestPythonPerfJitInNamespaces: the interpreter of TestPythonPerfJitChains
// as PID 1 of its own PID and mount namespaces, with a private tmpfs on
// /tmp: its jitdump file is /tmp/jit-1.dump there, gone with the namespace
// when it exits, before Ember symbolizes. Ember reads it through the
// mapping (the file held since the interpreter mapped it), so its frames
// are named and the chain is whole as outside namespaces.
func TestPythonPerfJitInNamespaces(t *testing.T) {
	testutil.RequireRoot(t)
	python := testutil.PerfPython(t, 13)
	unshare := testutil.RequireTool(t, "unshare")
	dir := t.TempDir()
	script := testutil.Testdata("jit", "chain.py")
	checkJITChains(t, dir, pythonChain, unshare, "--pid", "--fork", "--mount", "--", "sh", "-c",
		`mount -t tmpfs tmpfs /tmp && exec "$0" -X perf_jit "$1" 4`, python, script)
}
