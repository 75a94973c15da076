package bpf

import (
	"runtime"
	"testing"
	"weak"

	"github.com/cilium/ebpf/rlimit"

	"github.com/emberprof/ember/internal/testutil"
)

// ReleaseCaches lets the kernel's decoded BTF go (3.5 MiB of Go heap the
// agent held for its whole run while the first cache was a static object).
// First in this file: the first load in the process is the one that kept it.
func TestReleaseCachesFreesKernelBTF(t *testing.T) {
	testutil.RequireRoot(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	o, err := Load(Config{OnCPU: true, OffCPU: true, UnwindTables: true, Hook: HookSysExit})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	caches.mu.Lock()
	spec, err := caches.kernelBTF.Kernel()
	caches.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	kernel := weak.Make(spec)
	spec = nil
	ReleaseCaches()
	for range 3 {
		runtime.GC()
	}
	if kernel.Value() != nil {
		t.Error("the kernel's BTF is still reachable after ReleaseCaches")
	}
}

// Every program passes the verifier of the running kernel, with and without
// the table walker.
func TestLoad(t *testing.T) {
	testutil.RequireRoot(t)
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	for _, tables := range []bool{false, true} {
		o, err := Load(Config{OnCPU: true, OffCPU: true, UnwindTables: tables})
		if err != nil {
			t.Fatalf("tables=%v: %v", tables, err)
		}
		if tables && (o.UnwindRows == nil || o.UnwindProcs == nil) {
			t.Error("unwind maps missing")
		}
		if info, err := o.OnCPUSample.Info(); err == nil {
			if insns, err := info.Instructions(); err == nil {
				t.Logf("tables=%v: on_cpu_sample has %d instructions", tables, len(insns))
			}
		}
		o.Close()
	}
}
