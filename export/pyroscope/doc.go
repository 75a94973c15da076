// Package pyroscope ships profiles to a Grafana Pyroscope server.
//
// It uses Pyroscope's push API (connect push.v1.PusherService/Push, from
// github.com/grafana/pyroscope/api) for every profile, because the legacy
// /ingest endpoint files any pprof whose sample type mentions "cpu" as
// process_cpu, which would put off-CPU time under the CPU profile. With the
// push API the series labels __name__ (process_cpu or offcpu) and
// service_name say exactly where each profile lands.
//
// A Sink is built for a profiler that must never stall on the network:
//
//   - Enqueue trims the profile to the server's limits (16000 samples and
//     4 MiB uncompressed by default: the coldest samples go first, and the
//     trimmed count is exported), encodes it, and puts the bytes in a queue
//     with a byte budget. It never waits for the network. When the budget is
//     full the oldest profile is dropped and counted.
//   - Workers send queued profiles. Answers 5xx, 408 and 429, and transport
//     errors, are retried with exponential backoff (with a little jitter,
//     honouring Retry-After); any other answer is final and counted. A
//     profile older than MaxAge is dropped, since the server would reject it.
//   - Close delivers what is queued until its context is done, then drops and
//     counts the rest.
//
// Pyroscope makes a series of every distinct set of sample labels, so
// Config.DropSampleLabels can strip per-thread labels (tid, thread) and merge
// the samples they told apart.
//
// Credentials (basic auth, bearer token, tenant, extra headers) are Secrets:
// they print as [REDACTED] and are never logged. Every counter is exported
// to a prometheus.Registerer given in the Config.
//
// StartSelfProfile sends the profiler's own Go profiles to the same server
// with github.com/grafana/pyroscope-go.
package pyroscope
