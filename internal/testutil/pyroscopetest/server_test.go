package pyroscopetest

import (
	"bytes"
	"context"
	"errors"
	"mime/multipart"
	"net/http"
	"net/url"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/pprof/profile"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"
)

func pprofBytes(t *testing.T, samples int, sampleType string) []byte {
	t.Helper()
	f := &profile.Function{ID: 1, Name: "f"}
	l := &profile.Location{ID: 1, Line: []profile.Line{{Function: f}}}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: sampleType, Unit: "nanoseconds"}},
		Location:   []*profile.Location{l}, Function: []*profile.Function{f},
		TimeNanos: time.Now().UnixNano(),
	}
	for range samples {
		p.Sample = append(p.Sample, &profile.Sample{Location: []*profile.Location{l}, Value: []int64{10}})
	}
	var b bytes.Buffer
	if err := p.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func push(t *testing.T, s *Server, labels map[string]string, raw []byte) error {
	t.Helper()
	var ls []*typesv1.LabelPair
	for k, v := range labels {
		ls = append(ls, &typesv1.LabelPair{Name: k, Value: v})
	}
	c := pushv1connect.NewPusherServiceClient(http.DefaultClient, s.URL)
	_, err := c.Push(context.Background(), connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
		Labels: ls, Samples: []*pushv1.RawSample{{RawProfile: raw, ID: "id-1"}},
	}}}))
	return err
}

func TestPushValidation(t *testing.T) {
	s := New(t, Options{})
	ok := map[string]string{"__name__": "offcpu", "service_name": "svc", "pid": "1"}
	if err := push(t, s, ok, pprofBytes(t, 3, "offcpu")); err != nil {
		t.Fatal(err)
	}
	got := s.Series()
	if len(got) != 1 || got[0].Labels["pid"] != "1" || got[0].ID != "id-1" || Total(got[0].Profile, "offcpu") != 30 {
		t.Fatalf("series %+v", got)
	}
	for name, tc := range map[string]struct {
		labels map[string]string
		raw    []byte
	}{
		"no service":   {map[string]string{"__name__": "offcpu"}, pprofBytes(t, 1, "offcpu")},
		"bad name":     {map[string]string{"__name__": "off-cpu", "service_name": "s"}, pprofBytes(t, 1, "offcpu")},
		"bad label":    {map[string]string{"__name__": "offcpu", "service_name": "s", "a-b": "1"}, pprofBytes(t, 1, "offcpu")},
		"not pprof":    {ok, []byte("not a profile")},
		"many samples": {ok, pprofBytes(t, MaxSamples+1, "offcpu")},
		"dash type":    {ok, pprofBytes(t, 1, "off-cpu")},
	} {
		err := push(t, s, tc.labels, tc.raw)
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
	}
	if n := len(s.Series()); n != 1 {
		t.Errorf("%d series kept, want only the valid one", n)
	}
	for _, r := range s.Requests()[1:] {
		if r.Status != http.StatusBadRequest || r.Error == "" {
			t.Errorf("refusal answered %d (%q), want 400 with a reason", r.Status, r.Error)
		}
	}
}

func TestFaultsAndAuth(t *testing.T) {
	s := New(t, Options{BearerToken: "tok"})
	ok := map[string]string{"__name__": "process_cpu", "service_name": "svc"}
	raw := pprofBytes(t, 1, "cpu")
	if err := push(t, s, ok, raw); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("without the token: %v", err)
	}
	s.FailNext(2, http.StatusServiceUnavailable)
	c := &http.Client{Transport: headerRT{"Authorization": "Bearer tok"}}
	client := pushv1connect.NewPusherServiceClient(c, s.URL)
	req := connect.NewRequest(&pushv1.PushRequest{Series: []*pushv1.RawProfileSeries{{
		Labels:  []*typesv1.LabelPair{{Name: "__name__", Value: "process_cpu"}, {Name: "service_name", Value: "svc"}},
		Samples: []*pushv1.RawSample{{RawProfile: raw}},
	}}})
	for i := range 3 {
		_, err := client.Push(context.Background(), req)
		if (i < 2) != (err != nil) {
			t.Errorf("attempt %d: %v", i, err)
		}
	}
	var codes []int
	for _, r := range s.Requests() {
		codes = append(codes, r.Status)
	}
	if want := []int{401, 503, 503, 200}; len(codes) != 4 || codes[1] != want[1] || codes[2] != want[2] || codes[3] != want[3] || codes[0] != want[0] {
		t.Errorf("answers %v, want %v", codes, want)
	}

	s.Hang()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := client.Push(ctx, req); !errors.Is(err, context.DeadlineExceeded) && connect.CodeOf(err) != connect.CodeDeadlineExceeded {
		t.Errorf("push to a hung server: %v, want a deadline error", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := client.Push(context.Background(), req)
		done <- err
	}()
	if _, err := s.WaitRequests(context.Background(), 5); err != nil { // the gave-up one
		t.Fatal(err)
	}
	s.Release()
	if err := <-done; err != nil {
		t.Errorf("push after release: %v", err)
	}
	if n := len(s.Series()); n != 2 {
		t.Errorf("%d series, want 2", n)
	}
}

type headerRT map[string]string

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestIngest(t *testing.T) {
	s := New(t, Options{})
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	fw, _ := w.CreateFormFile("profile", "profile.pprof")
	fw.Write(pprofBytes(t, 2, "cpu"))
	w.Close()
	q := url.Values{"name": {"ember{hostname=n1,env=prod}"}, "spyName": {"gospy"}}
	resp, err := http.Post(s.URL+"/ingest?"+q.Encode(), w.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("ingest answered %d", resp.StatusCode)
	}
	got := s.Series()
	if len(got) != 1 {
		t.Fatalf("%d series", len(got))
	}
	l := got[0].Labels
	if l["service_name"] != "ember" || l["hostname"] != "n1" || l["env"] != "prod" || l["__name__"] != "process_cpu" || got[0].Endpoint != "ingest" {
		t.Errorf("labels %v from %s", l, got[0].Endpoint)
	}
	resp, err = http.Post(s.URL+"/ingest?name=x", "text/plain", bytes.NewReader([]byte("junk")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("junk ingest answered %d, want 400", resp.StatusCode)
	}
}
