package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	collpb "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"

	"github.com/emberprof/ember/export/otlp"
	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/internal/tracer"
)

// TestRecordOTLPRoundTrip records the whole system (cpusplit running) in wall mode (on-CPU and
// off-CPU) into profile.otlp, reads the file back through the Go OTLP types,
// and compares it with the pprof of the same recording (Summary.Profile):
// every sample type's total per stack (functions, files, lines, addresses,
// mappings with build IDs) and label set must match, and the command's
// process must be a resource with its pid and name.
func TestRecordOTLPRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := testutil.BuildCC(t, "clang-19", filepath.Join(dir, "cpusplit"),
		[]string{"-O2", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-pthread"}, "cpusplit/cpusplit.c")
	out := filepath.Join(dir, "profile.otlp")
	// Running beside the recording, not as a Command: record launches
	// commands by re-executing itself, which here is the test binary.
	work := exec.Command(bin, "8", "2")
	if err := work.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = work.Process.Kill(); _ = work.Wait() }()
	// The whole system, with the workload in it: many processes, many
	// resources.
	cfg := RecordConfig{Mode: pprof.ModeWall, Duration: 2 * time.Second, Outputs: []string{out}}
	cfg.Tracer = tracer.Config{Frequency: 499}
	sum, err := Record(context.Background(), cfg)
	if err != nil {
		testutil.SkipOrFail(t, "record: %v", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var req collpb.ExportProfilesServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatalf("%s is not an ExportProfilesServiceRequest: %v", out, err)
	}
	back, err := otlp.ToPprof(&req)
	if err != nil {
		t.Fatal(err)
	}
	p := sum.Profile
	if len(p.Sample) < 10 {
		t.Fatalf("only %d samples recorded: the comparison would prove little", len(p.Sample))
	}
	if diff := otlp.Compare(p, back); diff != "" {
		t.Fatalf("profile.otlp differs from the pprof of the same recording:\n%s", diff)
	}
	builds := 0
	for _, m := range back.Mapping {
		if m.BuildID != "" {
			builds++
		}
	}
	if builds == 0 {
		t.Fatalf("no mapping in the OTLP profile carries a build ID")
	}
	found := false
	for _, rp := range req.ResourceProfiles {
		a := map[string]string{}
		for _, kv := range rp.Resource.GetAttributes() {
			a[kv.Key] = kv.Value.String()
		}
		if a[otlp.AttrServiceName] != "" && a[otlp.AttrHostName] != "" && a[otlp.AttrPID] != "" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no resource has service.name, host.name and process.pid")
	}
	t.Logf("%d samples, %d sample types, %d resources, %d bytes of OTLP", len(p.Sample), len(p.SampleType), len(req.ResourceProfiles), len(b))
}
