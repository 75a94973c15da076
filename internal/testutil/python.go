package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// PerfPythonDefault is where `make deps` builds CPython 3.13 (from Debian's
// source package) with frame pointers.
const PerfPythonDefault = "/opt/ember-python3.13/bin/python3.13"

// PerfPython returns a CPython 3.minor or later built with frame pointers:
// $EMBER_PYTHON, the one `make deps` builds, or python3.13/python3.12 on the
// PATH; it skips (fails under EMBER_REQUIRE_BPF=1) when there is none.
// -X perf needs 3.12, -X perf_jit 3.13. x86-64's trampoline
// (Python/asm_trampoline.S) sets up no frame of its own, so the
// frame-pointer step through it finds its caller's frame only if the
// interpreter keeps frame pointers, as Python's perf documentation asks
// (-fno-omit-frame-pointer -mno-omit-leaf-frame-pointer).
func PerfPython(t testing.TB, minor int) string {
	t.Helper()
	candidates := []string{os.Getenv("EMBER_PYTHON"), PerfPythonDefault}
	for _, name := range []string{"python3.13", "python3.12", "python3"} {
		if p, err := exec.LookPath(name); err == nil {
			candidates = append(candidates, p)
		}
	}
	var seen []string
	for _, c := range candidates {
		if c == "" {
			continue
		}
		out, err := exec.Command(c, "-c", fmt.Sprintf(`import sys, sysconfig
assert sys.version_info >= (3, %d)
print("-fno-omit-frame-pointer" in (sysconfig.get_config_var("CFLAGS") or "") + (sysconfig.get_config_var("CONFIG_ARGS") or ""))`, minor)).Output()
		if err != nil {
			seen = append(seen, fmt.Sprintf("%s: not a Python 3.%d+", c, minor))
			continue
		}
		if strings.TrimSpace(string(out)) != "True" {
			seen = append(seen, c+": no frame pointers")
			continue
		}
		return c
	}
	SkipOrFail(t, "needs a CPython 3.%d+ built with frame pointers (make deps builds %s); found %s", minor, PerfPythonDefault, strings.Join(seen, "; "))
	return ""
}
