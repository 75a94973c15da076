package layering

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/emberprof/ember/internal/testutil"
)

const module = "github.com/emberprof/ember"

// libraries are the packages (with their subpackages) that must stay free of
// the kernel side and of internal/.
var libraries = []string{"symbolize", "unwind", "export"}

// forbidden reports why a library must not depend on dep, or "".
func forbidden(dep string) string {
	switch {
	case dep == module+"/bpf":
		return "the kernel side: only internal/tracer imports package bpf"
	case dep == "github.com/cilium/ebpf" || strings.HasPrefix(dep, "github.com/cilium/ebpf/"):
		return "the kernel side: cilium/ebpf belongs to bpf and internal/tracer"
	case strings.HasPrefix(dep, module+"/internal/"):
		return "internal/ is the agent's wiring: a library takes what it needs as an interface or a value"
	}
	return ""
}

// bpfImporters may import package bpf directly: internal/tracer alone.
var bpfImporters = []string{module + "/internal/tracer"}

type pkg struct {
	path    string
	imports []string
	deps    []string
}

// list runs go list over the module: each package's direct imports and
// all its dependencies, tests excluded (what the package itself links).
func list(t *testing.T) []pkg {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goTool, "list", "-f", "{{.ImportPath}}|{{join .Imports \" \"}}|{{join .Deps \" \"}}", "./...")
	cmd.Dir = testutil.RepoRoot()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "|")
		if len(f) != 3 {
			t.Fatalf("go list line %q", sc.Text())
		}
		pkgs = append(pkgs, pkg{f[0], strings.Fields(f[1]), strings.Fields(f[2])})
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	return pkgs
}

func isLibrary(path string) bool {
	for _, l := range libraries {
		if path == module+"/"+l || strings.HasPrefix(path, module+"/"+l+"/") {
			return true
		}
	}
	return false
}

// why returns a chain of imports from p to dep, for the error.
func why(pkgs []pkg, from, dep string) string {
	imports := map[string][]string{}
	for _, p := range pkgs {
		imports[p.path] = p.imports
	}
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == dep {
			var chain []string
			for c := dep; c != ""; c = prev[c] {
				chain = append(chain, strings.TrimPrefix(c, module+"/"))
			}
			slices.Reverse(chain)
			return strings.Join(chain, " -> ")
		}
		for _, i := range imports[cur] {
			if _, seen := prev[i]; !seen {
				prev[i] = cur
				queue = append(queue, i)
			}
		}
	}
	return from + " -> ... -> " + dep
}

// TestLibrariesStayLibraries: no library depends, even through another
// package, on the kernel side or on internal/.
func TestLibrariesStayLibraries(t *testing.T) {
	pkgs := list(t)
	n := 0
	for _, p := range pkgs {
		if !isLibrary(p.path) {
			continue
		}
		n++
		for _, d := range p.deps {
			if reason := forbidden(d); reason != "" {
				t.Errorf("%s depends on %s (%s): %s", p.path, d, why(pkgs, p.path, d), reason)
			}
		}
	}
	if n < len(libraries) {
		t.Fatalf("only %d library packages found", n)
	}
}

// TestOnlyTracerImportsBPF: package bpf is the tracer's.
func TestOnlyTracerImportsBPF(t *testing.T) {
	for _, p := range list(t) {
		if slices.Contains(p.imports, module+"/bpf") && !slices.Contains(bpfImporters, p.path) {
			t.Errorf("%s imports package bpf: only internal/tracer may (the kernel side stays behind it)", p.path)
		}
	}
}

// leaves are the packages every side shares: the readers of binaries (the
// object file cache and build IDs, objfile; Go's pclntab, gopclntab; DWARF's
// variable-length numbers, leb128) and the one way of writing a file whole
// (atomicfile) and of keeping a cache directory within its budget
// (cachedir). internal/proc, internal/tracer, symbolize, unwind and export
// import them, so they import nothing of Ember's: the dependency goes one way.
var leaves = []string{module + "/symbolize/objfile", module + "/symbolize/gopclntab", module + "/symbolize/leb128",
	module + "/export/atomicfile", module + "/export/cachedir"}

// TestLeavesImportNothingOfEmber: the shared readers depend on no other
// package of the module.
func TestLeavesImportNothingOfEmber(t *testing.T) {
	pkgs := list(t)
	found := 0
	for _, p := range pkgs {
		if !slices.Contains(leaves, p.path) {
			continue
		}
		found++
		for _, d := range p.deps {
			if strings.HasPrefix(d, module+"/") {
				t.Errorf("%s depends on %s (%s): a shared reader imports nothing of Ember's, or its users could not all import it", p.path, d, why(pkgs, p.path, d))
			}
		}
	}
	if found != len(leaves) {
		t.Fatalf("found %d of the %d leaf packages", found, len(leaves))
	}
}

// TestAgentIsWiring: internal/agent wires the others together, so only the
// commands import it; the tracer, the process table and the libraries never
// reach up into it (Go's ban on cycles alone would let a new package do so).
func TestAgentIsWiring(t *testing.T) {
	agent := module + "/internal/agent"
	for _, p := range list(t) {
		if slices.Contains(p.imports, agent) && !strings.HasPrefix(p.path, module+"/cmd/") {
			t.Errorf("%s imports internal/agent: only cmd/ does (the agent is the wiring on top)", p.path)
		}
	}
}

// TestTestutilOnlyInTests: the test helpers (the skip-or-fail rule, the
// Pyroscope servers) are linked into no binary; go list's Deps leave test
// files out, so any dependency seen here is from shipped code.
func TestTestutilOnlyInTests(t *testing.T) {
	pkgs := list(t)
	testutil := module + "/internal/testutil"
	for _, p := range pkgs {
		if p.path == testutil || strings.HasPrefix(p.path, testutil+"/") {
			continue
		}
		for _, d := range p.deps {
			if d == testutil || strings.HasPrefix(d, testutil+"/") {
				t.Errorf("%s depends on %s (%s): test helpers stay out of shipped code", p.path, d, why(pkgs, p.path, d))
			}
		}
	}
}
