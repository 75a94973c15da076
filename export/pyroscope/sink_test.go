package pyroscope

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberprof/ember/export/sink"
	"github.com/emberprof/ember/internal/testutil/pyroscopetest"
)

// Both kinds land under their own name, with the service, the profile's
// labels and the static ones, and with the totals that were sent.
func TestDeliversCPUAndOffCPU(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{BasicUser: "ember", BasicPassword: "s3cret-pw", TenantID: "team-a"})
	var logs logBuffer
	cfg := fastConfig(srv.URL)
	cfg.Auth = Auth{BasicUser: "ember", BasicPassword: "s3cret-pw", TenantID: "team-a",
		Headers: map[string]Secret{"X-Extra": "extra-secret"}}
	cfg.Labels = map[string]string{"hostname": "node-1", "env": "test"}
	cfg.Logger = logs.logger()
	s := newSink(t, cfg)

	cpu := testProfile(sink.NameCPU, 50, 0)
	off := testProfile(sink.NameOffCPU, 30, 0)
	wantCPU, wantCPUns, wantOff := sum(cpu, 0), sum(cpu, 1), sum(off, 0)
	for _, p := range []sink.Profile{
		{Service: "checkout", Name: sink.NameCPU, Labels: map[string]string{"pid": "4242", "comm": "checkout"}, Profile: cpu},
		{Service: "checkout", Name: sink.NameOffCPU, Labels: map[string]string{"pid": "4242", "comm": "checkout"}, Profile: off},
	} {
		if err := s.Enqueue(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	got := srv.Series()
	if len(got) != 2 {
		t.Fatalf("server got %d profiles, want 2", len(got))
	}
	byName := map[string]pyroscopetest.Series{}
	for _, g := range got {
		byName[g.Labels["__name__"]] = g
		want := map[string]string{"service_name": "checkout", "pid": "4242", "comm": "checkout", "hostname": "node-1", "env": "test"}
		for k, v := range want {
			if g.Labels[k] != v {
				t.Errorf("%s: label %s = %q, want %q (all: %v)", g.Labels["__name__"], k, g.Labels[k], v, g.Labels)
			}
		}
		if len(g.Labels) != len(want)+1 {
			t.Errorf("labels %v: want exactly __name__ and %v", g.Labels, want)
		}
		if err := g.Profile.CheckValid(); err != nil {
			t.Errorf("received profile is not valid: %v", err)
		}
	}
	c, ok1 := byName["process_cpu"]
	o, ok2 := byName["offcpu"]
	if !ok1 || !ok2 {
		t.Fatalf("profiles filed as %v, want process_cpu and offcpu", keys(byName))
	}
	if g := pyroscopetest.Total(c.Profile, "samples"); g != wantCPU {
		t.Errorf("cpu samples total %d, want %d", g, wantCPU)
	}
	if g := pyroscopetest.Total(c.Profile, "cpu"); g != wantCPUns {
		t.Errorf("cpu nanoseconds total %d, want %d", g, wantCPUns)
	}
	if g := pyroscopetest.Total(o.Profile, "offcpu"); g != wantOff {
		t.Errorf("offcpu total %d, want %d", g, wantOff)
	}
	if len(c.Profile.Sample) != 50 || len(o.Profile.Sample) != 30 {
		t.Errorf("samples: cpu %d, offcpu %d; want 50, 30", len(c.Profile.Sample), len(o.Profile.Sample))
	}
	for _, r := range srv.Requests() {
		if r.Header.Get("X-Scope-OrgID") != "team-a" || r.Header.Get("X-Extra") != "extra-secret" {
			t.Errorf("request headers %v: want tenant and extra header", r.Header)
		}
	}
	st := s.Stats()
	if st.Sent != 2 || st.Enqueued != 2 || st.DroppedTotal() != 0 || st.QueueBytes != 0 {
		t.Errorf("stats %+v: want 2 enqueued and sent, none dropped, queue empty", st)
	}
	if l := logs.String(); strings.Contains(l, "s3cret-pw") || strings.Contains(l, "extra-secret") {
		t.Errorf("a secret was logged:\n%s", l)
	}
}

func keys[V any](m map[string]V) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	return k
}

// A TLS server is reached with its CA file and a bearer token, and not
// without the CA file.
func TestTLSAndBearer(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{TLS: true, BearerToken: "tok-123"})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, srv.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	p := sink.Profile{Service: "api", Name: sink.NameCPU, Profile: testProfile(sink.NameCPU, 5, 0)}

	cfg := fastConfig(srv.URL)
	cfg.Auth.BearerToken = "tok-123"
	cfg.TLS.CAFile = ca
	s := newSink(t, cfg)
	if err := s.Enqueue(p); err != nil {
		t.Fatal(err)
	}
	if got := waitSeries(t, srv, 1); got[0].Labels["service_name"] != "api" {
		t.Errorf("got %v", got[0].Labels)
	}

	cfg.TLS.CAFile = ""
	cfg.MaxAge = time.Hour
	untrusting := newSink(t, cfg)
	if err := untrusting.Enqueue(p); err != nil {
		t.Fatal(err)
	}
	st := waitStats(t, untrusting, func(st Stats) bool { return st.FailedAttempts > 0 })
	if st.Sent != 0 || st.FailedAttempts == 0 {
		t.Errorf("without the CA: stats %+v, want failed attempts and nothing sent", st)
	}
	if n := len(srv.Series()); n != 1 {
		t.Errorf("server got %d profiles, want only the one sent with the CA", n)
	}
	if err := untrusting.Close(ctxTimeout(t, 100*time.Millisecond)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want a deadline error", err)
	}
	if st := untrusting.Stats(); st.Dropped[DropShutdown] != 1 {
		t.Errorf("stats %+v: want the profile dropped at shutdown", st)
	}
}

// User information in the URL is basic auth, and is not logged.
func TestURLUserInfo(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{BasicUser: "u", BasicPassword: "url-pw"})
	var logs logBuffer
	cfg := fastConfig(strings.Replace(srv.URL, "http://", "http://u:url-pw@", 1))
	cfg.Logger = logs.logger()
	cfg.Logger.Info("config", "pyroscope", cfg)
	s := newSink(t, cfg)
	if err := s.Enqueue(sink.Profile{Service: "a", Name: sink.NameOffCPU, Profile: testProfile(sink.NameOffCPU, 3, 0)}); err != nil {
		t.Fatal(err)
	}
	waitSeries(t, srv, 1)
	if l := logs.String(); strings.Contains(l, "url-pw") || !strings.Contains(l, "xxxxx") {
		t.Errorf("log should show the URL with its password redacted:\n%s", l)
	}
}

func TestSecretsAreRedacted(t *testing.T) {
	cfg := Config{URL: "http://x", Auth: Auth{BasicUser: "u", BasicPassword: "pw-AAA", BearerToken: "tok-BBB",
		Headers: map[string]Secret{"Authorization": "hdr-CCC"}}}
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		out := fmt.Sprintf(f, cfg)
		for _, secret := range []string{"pw-AAA", "tok-BBB", "hdr-CCC", "70772d414141"} {
			if strings.Contains(out, secret) {
				t.Errorf("fmt %s shows a secret: %s", f, out)
			}
		}
	}
	if Secret("x").Value() != "x" {
		t.Error("Value does not return the secret")
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("EMBER_TEST_SECRET", "from-env")
	for _, tc := range []struct {
		value, file, env, want string
		err                    bool
	}{
		{value: "from-flag", env: "EMBER_TEST_SECRET", want: "from-flag"},
		{file: file, env: "EMBER_TEST_SECRET", want: "from-file"},
		{env: "EMBER_TEST_SECRET", want: "from-env"},
		{want: ""},
		{value: "a", file: file, err: true},
		{file: filepath.Join(dir, "missing"), err: true},
	} {
		got, err := LoadSecret(tc.value, tc.file, tc.env)
		if (err != nil) != tc.err || got.Value() != tc.want {
			t.Errorf("LoadSecret(%q, %q, %q) = %q, %v; want %q, error %v", tc.value, tc.file, tc.env, got.Value(), err, tc.want, tc.err)
		}
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, maxSecretBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecret("", big, ""); err == nil {
		t.Error("an oversized secret file was accepted")
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no url":            {},
		"ftp":               {URL: "ftp://host"},
		"basic and bearer":  {URL: "http://h", Auth: Auth{BasicUser: "u", BearerToken: "t"}},
		"password, no user": {URL: "http://h", Auth: Auth{BasicPassword: "p"}},
		"bad static label":  {URL: "http://h", Labels: map[string]string{"bad-name": "v"}},
		"reserved label":    {URL: "http://h", Labels: map[string]string{"__name__": "v"}},
		"missing CA file":   {URL: "https://h", TLS: TLS{CAFile: "/nonexistent/ca.pem"}},
		"cert without key":  {URL: "https://h", TLS: TLS{CertFile: "/x"}},
		"bad header":        {URL: "http://h", Auth: Auth{Headers: map[string]Secret{"a b": "c"}}},
	} {
		if s, err := New(cfg); err == nil {
			_ = s.Close(t.Context())
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// Profiles with labels the server would refuse are refused at once, with
// ErrInvalid, and counted.
func TestInvalidProfilesRefused(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	s := newSink(t, fastConfig(srv.URL))
	p := testProfile(sink.NameCPU, 3, 0)
	for name, sp := range map[string]sink.Profile{
		"no service":     {Name: sink.NameCPU, Profile: p},
		"bad name":       {Service: "a", Name: "off-cpu", Profile: p},
		"bad label":      {Service: "a", Name: sink.NameCPU, Profile: p, Labels: map[string]string{"1x": "v"}},
		"service label":  {Service: "a", Name: sink.NameCPU, Profile: p, Labels: map[string]string{"service_name": "b"}},
		"nil profile":    {Service: "a", Name: sink.NameCPU},
		"too many":       {Service: "a", Name: sink.NameCPU, Profile: p, Labels: manyLabels(40)},
		"value too long": {Service: "a", Name: sink.NameCPU, Profile: p, Labels: map[string]string{"k": strings.Repeat("v", 3000)}},
	} {
		if err := s.Enqueue(sp); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Enqueue = %v, want ErrInvalid", name, err)
		}
	}
	if st := s.Stats(); st.Dropped[DropInvalid] != 7 || st.Enqueued != 0 {
		t.Errorf("stats %+v: want 7 invalid, none enqueued", st)
	}
}

func manyLabels(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("l%d", i)] = "v"
	}
	return m
}

// The counters are exported to the registerer, with every drop reason.
func TestMetricsRegistered(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	reg := prometheus.NewRegistry()
	cfg := fastConfig(srv.URL)
	cfg.Registerer = reg
	cfg.QueueBytes = 1 << 20
	s := newSink(t, cfg)
	srv.FailNext(1, http.StatusServiceUnavailable)
	if err := s.Enqueue(sink.Profile{Service: "a", Name: sink.NameCPU, Profile: testProfile(sink.NameCPU, 3, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, lp := range m.GetLabel() {
				name += "{" + lp.GetName() + "=" + lp.GetValue() + "}"
			}
			switch {
			case m.GetCounter() != nil:
				got[name] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[name] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				got[name] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for name, want := range map[string]float64{
		"ember_pyroscope_profiles_enqueued_total":                   1,
		"ember_pyroscope_profiles_sent_total":                       1,
		"ember_pyroscope_upload_attempts_total":                     2,
		"ember_pyroscope_upload_failures_total{code=503}":           1,
		"ember_pyroscope_profiles_dropped_total{reason=queue_full}": 0,
		"ember_pyroscope_profiles_dropped_total{reason=rejected}":   0,
		"ember_pyroscope_queue_bytes":                               0,
		"ember_pyroscope_queue_budget_bytes":                        1 << 20,
		"ember_pyroscope_upload_duration_seconds":                   2,
		"ember_pyroscope_trimmed_samples_total":                     0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	if _, err := New(cfg); err == nil {
		t.Error("a second sink registered the same metrics on the same registry")
	}
}
