package otlp_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/otlp"
	"github.com/emberprof/ember/export/pyroscope"
	"github.com/emberprof/ember/export/sink"
	"github.com/emberprof/ember/internal/testutil/pyroscopereal"
)

// period is the on-CPU sampling period of cpuProfile: 99 Hz.
const period = 1_000_000_000 / 99

// cpuProfile is an on-CPU profile as the agent builds it, ending now, with
// one stack, main calling leaf, sampled 99 times.
func cpuProfile(leaf string) *profile.Profile {
	m := &profile.Mapping{ID: 1, Start: 0x400000, Limit: 0x500000, File: "/usr/bin/app", BuildID: "00112233"}
	fl := &profile.Function{ID: 1, Name: leaf, SystemName: leaf, Filename: "app.c"}
	fm := &profile.Function{ID: 2, Name: "main", SystemName: "main", Filename: "app.c"}
	l1 := &profile.Location{ID: 1, Mapping: m, Address: 0x401000, Line: []profile.Line{{Function: fl, Line: 10}}}
	l2 := &profile.Location{ID: 2, Mapping: m, Address: 0x402000, Line: []profile.Line{{Function: fm, Line: 20}}}
	return &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"}, Period: period,
		TimeNanos: time.Now().Add(-10 * time.Second).UnixNano(), DurationNanos: 10e9,
		Mapping: []*profile.Mapping{m}, Function: []*profile.Function{fl, fm}, Location: []*profile.Location{l1, l2},
		Sample: []*profile.Sample{{Location: []*profile.Location{l1, l2}, Value: []int64{99, 99 * period},
			Label: map[string][]string{"comm": {"app"}}, NumLabel: map[string][]int64{"pid": {42}, "tid": {43}}}},
	}
}

// offCPUProfile is an off-CPU profile as the agent builds it: blocked time
// in nanoseconds, no period; main calling leaf blocked for half a second.
func offCPUProfile(leaf string) *profile.Profile {
	p := cpuProfile(leaf)
	p.SampleType = []*profile.ValueType{{Type: "offcpu", Unit: "nanoseconds"}}
	p.PeriodType, p.Period = nil, 0
	p.Sample[0].Value = []int64{5e8}
	return p
}

// TestRealPyroscope exports through the agent's OTLP sink to the real
// Pyroscope server, over gRPC and over HTTP/protobuf, both on its HTTP port
// (where Pyroscope mounts its OTLP receiver: /v1development/profiles, and
// ProfilesService/Export as HTTP/2 without TLS), and reads each profile back
// through the query API: CPU lands as process_cpu, under the resource's
// service.name, with the samples' comm attribute as a label, the stack's frames
// and 99 samples' worth of CPU time (samples times the period). The server
// is started once, for both subtests.
func TestRealPyroscope(t *testing.T) {
	srv := pyroscopereal.Start(t)
	const cpuType = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
	for _, protocol := range []string{otlp.ProtocolGRPC, otlp.ProtocolHTTP} {
		t.Run(protocol, func(t *testing.T) {
			name := map[string]string{otlp.ProtocolGRPC: "grpc", otlp.ProtocolHTTP: "http"}[protocol]
			service, leaf := "ember-otlp-"+name, "leaf_via_"+name
			s, err := otlp.NewSink(otlp.SinkConfig{Protocol: protocol, Config: pyroscope.Config{URL: srv.URL,
				Labels: map[string]string{"hostname": "ember-test"}, DropSampleLabels: []string{"tid"}}})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := s.Enqueue(sink.Profile{Service: service, Name: sink.NameCPU, Labels: map[string]string{"pid": "42"}, Profile: cpuProfile(leaf)}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.Sent != 1 || st.DroppedTotal() != 0 {
				t.Fatalf("sink stats %+v: want 1 sent, none dropped", st)
			}
			// Sample attributes become series labels (comm); resource
			// attributes other than service.name do not in this build.
			selector := `{service_name="` + service + `",comm="app"}`
			fg, err := srv.WaitFor(ctx, cpuType, selector, leaf, start.Add(-time.Hour), time.Now().Add(time.Hour))
			if err != nil {
				t.Fatalf("%v\nserver log:\n%s", err, srv.LogTail())
			}
			if !fg.Has("main") || fg.Total != 99*period {
				t.Fatalf("flame graph %+v: want main and %s, total %d ns", fg, leaf, 99*period)
			}
			t.Logf("%s: read back as %s %s %v after the export: total %d ns", protocol, cpuType, selector, time.Since(start).Round(time.Millisecond), fg.Total)
		})
	}
	// Off-CPU time: Pyroscope's OTLP receiver files off_cpu/nanoseconds
	// under the name off_cpu (the push API's is offcpu), without a period.
	t.Run("offcpu", func(t *testing.T) {
		const offType = "off_cpu:off_cpu:nanoseconds::"
		service, leaf := "ember-otlp-offcpu", "leaf_blocked"
		s, err := otlp.NewSink(otlp.SinkConfig{Protocol: otlp.ProtocolGRPC, Config: pyroscope.Config{URL: srv.URL}})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := s.Enqueue(sink.Profile{Service: service, Name: sink.NameOffCPU, Profile: offCPUProfile(leaf)}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		fg, err := srv.WaitFor(ctx, offType, `{service_name="`+service+`"}`, leaf, start.Add(-time.Hour), time.Now().Add(time.Hour))
		if err != nil {
			t.Fatalf("%v\nserver log:\n%s", err, srv.LogTail())
		}
		if fg.Total != 5e8 {
			t.Fatalf("flame graph %+v: want a total of 5e8 ns", fg)
		}
		t.Logf("off-CPU read back as %s: total %d ns", offType, fg.Total)
	})
}
