package pyroscope

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/emberprof/ember/internal/testutil/pyroscopetest"
)

// The profiler's own profiles reach the server's /ingest endpoint under the
// service name, with the labels and the credentials given.
func TestSelfProfile(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{BasicUser: "ember", BasicPassword: "pw", TenantID: "ops"})
	sp, err := StartSelfProfile(SelfProfileConfig{
		URL:     srv.URL,
		Auth:    Auth{BasicUser: "ember", BasicPassword: "pw", TenantID: "ops"},
		Service: "ember-test",
		Labels:  map[string]string{"hostname": "node-7"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Burn some CPU for the CPU profile to see.
	sum := sha256.Sum256(nil)
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
		sum = sha256.Sum256(sum[:])
	}
	if err := sp.Stop(ctxTimeout(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, s := range srv.Series() {
		if s.Endpoint != "ingest" || s.Labels["service_name"] != "ember-test" || s.Labels["hostname"] != "node-7" {
			t.Errorf("unexpected series %v from %s", s.Labels, s.Endpoint)
		}
		names[s.Labels["__name__"]] = true
	}
	if !names["process_cpu"] || !names["memory"] {
		t.Errorf("self-profiles filed as %v, want process_cpu and memory", names)
	}
	for _, r := range srv.Requests() {
		if r.Status != 200 {
			t.Errorf("request to %s answered %d: %s", r.Path, r.Status, r.Error)
		}
	}
}
