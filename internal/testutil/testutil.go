package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Required reports whether skips are failures: CI sets EMBER_REQUIRE_BPF=1.
func Required() bool { return os.Getenv("EMBER_REQUIRE_BPF") == "1" }

// SkipOrFail skips the test with the reason, or fails it when EMBER_REQUIRE_BPF=1.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("EMBER_REQUIRE_BPF=1 but: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequireRoot skips (or fails) a test that needs root to load BPF programs.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root to load BPF programs")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		SkipOrFail(t, "kernel has no BTF: %v", err)
	}
}

// RequireTool returns the path of a command the test needs, or skips (fails).
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, "needs %s: %v", name, err)
	}
	return p
}

// RepoRoot returns the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Testdata returns a path under the top-level testdata directory.
func Testdata(parts ...string) string {
	return filepath.Join(append([]string{RepoRoot(), "testdata"}, parts...)...)
}

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// BuildC compiles C sources from testdata into out with gcc and flags.
func BuildC(t testing.TB, out string, flags []string, srcs ...string) string {
	t.Helper()
	return BuildCC(t, "gcc", out, flags, srcs...)
}

// BuildCC compiles C or C++ sources from testdata into out with compiler cc.
func BuildCC(t testing.TB, cc, out string, flags []string, srcs ...string) string {
	t.Helper()
	if p, ok := Prebuilt(t, out); ok {
		return p
	}
	cc = RequireTool(t, cc)
	args := append([]string{"-o", out}, flags...)
	for _, s := range srcs {
		args = append(args, Testdata(s))
	}
	Run(t, filepath.Dir(out), cc, args...)
	return out
}

// BuildOffCPU builds the testdata/offcpu workload name into dir with frame
// pointers kept everywhere they can be (clang, leaves included, no sibling
// calls), so that every blocking stack is whole without unwind tables.
func BuildOffCPU(t testing.TB, dir, name string) string {
	t.Helper()
	return BuildCC(t, "clang-19", filepath.Join(dir, name),
		[]string{"-O2", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-fno-optimize-sibling-calls", "-pthread"},
		"offcpu/"+name+".c")
}

// BuildGo builds a Go package directory from testdata into out.
func BuildGo(t testing.TB, out string, flags []string, pkgDir string) string {
	t.Helper()
	if p, ok := Prebuilt(t, out); ok {
		return p
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	args := append([]string{"build", "-o", out}, flags...)
	args = append(args, ".")
	cmd := exec.Command(gobin, args...)
	cmd.Dir = Testdata(pkgDir)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GO111MODULE=on")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkgDir, err, b)
	}
	return out
}

// PrebuiltEnv names a directory of workloads built beforehand. Set, the
// builders above return <dir>/<base name of out> instead of compiling, so
// that a test binary runs where there is no compiler: the kernel matrix
// (cmd/emberkernels) runs cmd/ember's tests inside qemu guests that have
// only static binaries. The prebuilt workload must have been built with the
// flags the test asks for; cmd/emberkernels builds them so.
const PrebuiltEnv = "EMBER_TESTDATA_BIN"

// Prebuilt returns the prebuilt workload for out when EMBER_TESTDATA_BIN is
// set (failing the test if it is missing), and false when it is not set.
func Prebuilt(t testing.TB, out string) (string, bool) {
	t.Helper()
	dir := os.Getenv(PrebuiltEnv)
	if dir == "" {
		return "", false
	}
	p := filepath.Join(dir, filepath.Base(out))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s=%s but no prebuilt %s: %v", PrebuiltEnv, dir, filepath.Base(out), err)
	}
	return p, true
}

// Cgroup2Mount returns where the cgroup v2 file system is mounted, or skips
// the test (fails it under EMBER_REQUIRE_BPF=1) when none is.
func Cgroup2Mount(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[2] == "cgroup2" {
			return f[1]
		}
	}
	SkipOrFail(t, "no cgroup2 file system mounted")
	return ""
}
