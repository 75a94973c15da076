// Package pyroscopetest runs an in-process stand-in for a Pyroscope server,
// for tests of code that ships profiles.
//
// The server listens on 127.0.0.1 only and serves what a real server serves
// to agents: the Connect push API (push.v1.PusherService/Push, through the
// handler generated in github.com/grafana/pyroscope/api) and the legacy
// /ingest endpoint that github.com/grafana/pyroscope-go uploads to. It checks
// what it receives the way Pyroscope does (labels, valid pprof, 16000
// samples, 4 MiB uncompressed, not older than an hour), answers 400 for what
// Pyroscope would refuse, and records every request and every accepted
// profile, decoded, for the test to inspect.
//
// A test can script faults: answer a status for the next N requests (as a
// proxy or an overloaded server would), hang every request until released,
// or require credentials.
package pyroscopetest
