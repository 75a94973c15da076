package bpf

import (
	"testing"

	"github.com/cilium/ebpf/rlimit"

	"github.com/emberprof/ember/internal/testutil"
)

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
