package otlp

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	collpb "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/emberprof/ember/export/pyroscope"
	"github.com/emberprof/ember/export/sink"
)

// cpuSinkProfile is synthetic() as the agent hands it to a sink: on-CPU,
// stamped now (the queue drops profiles over an hour old).
func cpuSinkProfile() sink.Profile {
	p := synthetic()
	p.TimeNanos = time.Now().Add(-5 * time.Second).UnixNano()
	return sink.Profile{Service: "app", Name: sink.NameCPU, Labels: map[string]string{"pid": "42", "container_id": id64}, Profile: p}
}

// testConfig is a sink configuration with backoffs short enough for a test
// that retries.
func testConfig(url, protocol string) SinkConfig {
	return SinkConfig{Protocol: protocol, Config: pyroscope.Config{URL: url,
		Labels:     map[string]string{"hostname": "box", "env": "test"},
		Auth:       pyroscope.Auth{Headers: map[string]pyroscope.Secret{"X-Scope-OrgID": "tenant1"}},
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, DropSampleLabels: []string{"tid"}}}
}

// checkRequest checks what the receiver got: one resource with the
// semantic-convention attributes, one profile of samples/count with the
// CPU period (what Pyroscope files as process_cpu), the tid label dropped.
func checkRequest(t *testing.T, req *collpb.ExportProfilesServiceRequest) {
	t.Helper()
	if len(req.ResourceProfiles) != 1 {
		t.Fatalf("%d resources, want 1", len(req.ResourceProfiles))
	}
	got := map[string]string{}
	for _, kv := range req.ResourceProfiles[0].Resource.Attributes {
		got[kv.Key] = attrString(kv.Value)
	}
	want := map[string]string{AttrServiceName: "app", AttrHostName: "box", AttrPID: "42", AttrContainerID: id64, "env": "test"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("resource attribute %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	profs := req.ResourceProfiles[0].ScopeProfiles[0].Profiles
	if len(profs) != 1 {
		t.Fatalf("%d profiles, want 1 (the on-CPU sample type only)", len(profs))
	}
	st := req.Dictionary.StringTable
	p := profs[0]
	if typ := st[p.SampleType.TypeStrindex] + "/" + st[p.SampleType.UnitStrindex]; typ != "samples/count" || p.Period != 10101010 {
		t.Errorf("sample type %s, period %d: want samples/count, 10101010", typ, p.Period)
	}
	for _, s := range p.Samples {
		for _, i := range s.AttributeIndices {
			if k := st[req.Dictionary.AttributeTable[i].KeyStrindex]; k == "tid" {
				t.Errorf("sample attribute tid exported; the sink drops it")
			}
		}
	}
}

func attrString(v *commonpb.AnyValue) string {
	if i, ok := v.Value.(*commonpb.AnyValue_IntValue); ok {
		return strconv.FormatInt(i.IntValue, 10)
	}
	return v.GetStringValue()
}

// TestSinkHTTP: the sink posts protobuf to /v1development/profiles with the
// configured headers, retries a 503 and stops at a 400 or a partial
// success that rejected the profile, counting each.
func TestSinkHTTP(t *testing.T) {
	var mu sync.Mutex
	answers := []int{http.StatusServiceUnavailable, http.StatusOK, http.StatusBadRequest, -1}
	var got []*collpb.ExportProfilesServiceRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != HTTPPath || r.Header.Get("Content-Type") != "application/x-protobuf" || r.Header.Get("X-Scope-OrgID") != "tenant1" {
			t.Errorf("request %s %s, headers %v", r.Method, r.URL.Path, r.Header)
		}
		body, _ := io.ReadAll(r.Body)
		req := &collpb.ExportProfilesServiceRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			t.Errorf("body: %v", err)
		}
		got = append(got, req)
		code := answers[0]
		answers = answers[1:]
		if code == -1 { // a partial success
			b, _ := proto.Marshal(&collpb.ExportProfilesServiceResponse{PartialSuccess: &collpb.ExportProfilesPartialSuccess{RejectedProfiles: 1, ErrorMessage: "no"}})
			w.Header().Set("Content-Type", "application/x-protobuf")
			_, _ = w.Write(b)
			return
		}
		w.WriteHeader(code)
	}))
	defer srv.Close()
	s, err := NewSink(testConfig(srv.URL, ProtocolHTTP))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 3 {
		if err := s.Enqueue(cpuSinkProfile()); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	checkRequest(t, got[0])
	st := s.Stats()
	if len(got) != 4 || st.Sent != 1 || st.Attempts != 4 || st.Dropped[pyroscope.DropRejected] != 2 {
		t.Fatalf("%d requests, stats %+v: want 4 requests (503 retried once), 1 sent, 2 rejected", len(got), st)
	}
}

// exporter is an OTLP gRPC receiver that answers with codes in turn.
type exporter struct {
	collpb.UnimplementedProfilesServiceServer
	mu     sync.Mutex
	codes  []codes.Code
	got    []*collpb.ExportProfilesServiceRequest
	tenant []string
}

func (e *exporter) Export(ctx context.Context, req *collpb.ExportProfilesServiceRequest) (*collpb.ExportProfilesServiceResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	e.tenant = append(e.tenant, md.Get("x-scope-orgid")...)
	e.got = append(e.got, req)
	c := e.codes[0]
	e.codes = e.codes[1:]
	if c != codes.OK {
		return nil, status.Error(c, "test")
	}
	return &collpb.ExportProfilesServiceResponse{}, nil
}

// TestSinkGRPC: the sink calls ProfilesService/Export with the headers as
// metadata, retries Unavailable and ResourceExhausted, and stops at
// InvalidArgument.
func TestSinkGRPC(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &exporter{codes: []codes.Code{codes.Unavailable, codes.ResourceExhausted, codes.OK, codes.InvalidArgument}}
	g := grpc.NewServer()
	collpb.RegisterProfilesServiceServer(g, e)
	go func() { _ = g.Serve(l) }()
	defer g.Stop()
	s, err := NewSink(testConfig("http://"+l.Addr().String(), ProtocolGRPC))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 {
		if err := s.Enqueue(cpuSinkProfile()); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	checkRequest(t, e.got[0])
	st := s.Stats()
	if len(e.got) != 4 || st.Sent != 1 || st.Dropped[pyroscope.DropRejected] != 1 || len(e.tenant) != 4 || e.tenant[0] != "tenant1" {
		t.Fatalf("%d calls, tenants %v, stats %+v: want 4 calls with tenant1, 1 sent, 1 rejected", len(e.got), e.tenant, st)
	}
}

// TestSinkMetricsBesidePyroscope: the agent registers both sinks on one
// registry; the OTLP sink's counters are ember_otlp_*, apart from the
// Pyroscope sink's, and count its own uploads.
func TestSinkMetricsBesidePyroscope(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	p, err := pyroscope.New(pyroscope.Config{URL: srv.URL, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	cfg := testConfig(srv.URL, ProtocolHTTP)
	cfg.Registerer = reg
	s, err := NewSink(cfg)
	if err != nil {
		t.Fatalf("an OTLP sink beside a Pyroscope sink on one registry: %v", err)
	}
	if err := s.Enqueue(cpuSinkProfile()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sent float64 = -1
	for _, f := range families {
		if f.GetName() == "ember_otlp_profiles_sent_total" {
			sent = f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if sent != 1 {
		t.Fatalf("ember_otlp_profiles_sent_total = %v, want 1", sent)
	}
}
