package symbolize

import (
	"bytes"
	"debug/elf"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/emberprof/ember/internal/testutil"
)

// Test binaries are built from the sources in testdata, once per test run,
// into one temporary directory.

// requireTool returns the path of a tool (or of one of its alternatives), or
// skips the test: testutil.SkipOrFail, a failure under EMBER_REQUIRE_BPF=1.
func requireTool(tb testing.TB, name string, alts ...string) string {
	tb.Helper()
	for _, n := range append([]string{name}, alts...) {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	testutil.SkipOrFail(tb, "%s is not installed (make deps installs it)", name)
	return ""
}

var (
	buildMu   sync.Mutex
	buildDir  string
	buildDone = map[string]error{}
)

func testDir(tb testing.TB) string {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir == "" {
		d, err := os.MkdirTemp("", "ember-symbolize-test-")
		if err != nil {
			tb.Fatal(err)
		}
		buildDir = d
	}
	return buildDir
}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		benchChild()
		return
	}
	code := m.Run()
	if buildDir != "" && os.Getenv("EMBER_KEEP_TESTDATA") == "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// run runs a command, failing the test with its output if it fails.
func run(tb testing.TB, dir string, name string, args ...string) {
	tb.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// built runs build once per key and returns the path of key in the test
// directory.
func built(tb testing.TB, key string, build func(dir, out string)) string {
	tb.Helper()
	dir := testDir(tb)
	out := filepath.Join(dir, key)
	buildMu.Lock()
	err, ok := buildDone[key]
	buildMu.Unlock()
	if ok {
		if err != nil {
			tb.Fatalf("building %s failed earlier: %v", key, err)
		}
		return out
	}
	build(dir, out)
	if _, err := os.Stat(out); err != nil {
		buildMu.Lock()
		buildDone[key] = err
		buildMu.Unlock()
		tb.Fatalf("building %s: %v", key, err)
	}
	buildMu.Lock()
	buildDone[key] = nil
	buildMu.Unlock()
	return out
}

func srcPath(tb testing.TB, name string) string {
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// textAddresses samples n addresses, uniformly over the bytes of the function
// symbols that lie in the executable sections of the ELF file at path, with
// a fixed seed. The test compares these against llvm-symbolizer.
func textAddresses(tb testing.TB, path string, n int) []uint64 {
	tb.Helper()
	ef, err := elf.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer ef.Close()
	syms, err := ef.Symbols()
	if err != nil {
		syms, err = ef.DynamicSymbols()
		if err != nil {
			tb.Fatalf("%s: no symbols to sample from: %v", path, err)
		}
	}
	type span struct{ lo, hi uint64 }
	var spans []span
	seen := map[uint64]bool{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Size == 0 || int(s.Section) >= len(ef.Sections) || seen[s.Value] {
			continue
		}
		sec := ef.Sections[s.Section]
		if sec.Flags&elf.SHF_EXECINSTR == 0 {
			continue
		}
		seen[s.Value] = true
		spans = append(spans, span{s.Value, s.Value + s.Size})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	var total uint64
	for _, s := range spans {
		total += s.hi - s.lo
	}
	if total == 0 {
		tb.Fatalf("%s: no function bytes", path)
	}
	r := rand.New(rand.NewPCG(1, uint64(len(path))))
	addrs := make([]uint64, n)
	for i := range addrs {
		k := r.Uint64N(total)
		for _, s := range spans {
			if k < s.hi-s.lo {
				addrs[i] = s.lo + k
				break
			}
			k -= s.hi - s.lo
		}
	}
	return addrs
}

// llvmFrames runs llvm-symbolizer-19 on addrs and parses its output.
func llvmFrames(tb testing.TB, obj string, addrs []uint64, flags ...string) [][]Frame {
	tb.Helper()
	tool := requireTool(tb, "llvm-symbolizer-19")
	var in bytes.Buffer
	for _, a := range addrs {
		in.WriteString("0x" + strconvHex(a) + "\n")
	}
	cmd := exec.Command(tool, append([]string{"--obj=" + obj}, flags...)...)
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("llvm-symbolizer: %v", err)
	}
	res, err := parseLLVMOutput(out)
	if err != nil {
		tb.Fatal(err)
	}
	if len(res) != len(addrs) {
		tb.Fatalf("llvm-symbolizer gave %d answers for %d addresses", len(res), len(addrs))
	}
	return res
}

func strconvHex(a uint64) string {
	const digits = "0123456789abcdef"
	if a == 0 {
		return "0"
	}
	var b [16]byte
	i := len(b)
	for a > 0 {
		i--
		b[i] = digits[a&15]
		a >>= 4
	}
	return string(b[i:])
}
