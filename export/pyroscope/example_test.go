package pyroscope_test

import (
	"context"
	"log"
	"log/slog"
	"time"

	"github.com/google/pprof/profile"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberprof/ember/export/filesink"
	"github.com/emberprof/ember/export/pyroscope"
	"github.com/emberprof/ember/export/sink"
)

// The agent's wiring: both sinks behind one, a profile per service and
// kind every interval, and a bounded flush at exit.
func Example() {
	reg := prometheus.NewRegistry()
	push, err := pyroscope.New(pyroscope.Config{
		URL:        "http://127.0.0.1:4040",
		Auth:       pyroscope.Auth{TenantID: "team-a"},
		Labels:     map[string]string{"hostname": "node-1"},
		Registerer: reg,
		Logger:     slog.Default(),
	})
	if err != nil {
		log.Fatal(err)
	}
	files, err := filesink.New(filesink.Config{Dir: "/var/lib/ember/profiles", Registerer: reg})
	if err != nil {
		log.Fatal(err)
	}
	out := sink.Multi(push, files)

	var cpu, offcpu *profile.Profile // built by the agent every interval
	end := time.Now()
	labels := map[string]string{"pid": "4242", "comm": "checkout"}
	_ = out.Enqueue(sink.Profile{Service: "checkout", Name: sink.NameCPU, Labels: labels, Profile: cpu, Time: end})
	_ = out.Enqueue(sink.Profile{Service: "checkout", Name: sink.NameOffCPU, Labels: labels, Profile: offcpu, Time: end})

	// On SIGTERM, after the last partial interval is enqueued:
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := out.Close(ctx); err != nil {
		slog.Warn("profiles lost at shutdown", "err", err)
	}
}
