// Package otlp turns Ember's pprof profiles into OpenTelemetry profiles
// (OTLP, the v1development protocol: go.opentelemetry.io/proto/otlp/profiles/
// v1development and .../collector/profiles/v1development at v0.3.0, which is
// what Grafana Pyroscope's OTLP receiver and the OpenTelemetry eBPF profiler
// speak), and back.
//
// One pprof with several sample types becomes several OTLP profiles, since an
// OTLP profile has one sample type, sharing one dictionary: on-CPU samples
// are `samples/count` with period type `cpu/nanoseconds` (what the
// OpenTelemetry profiler sends and Pyroscope files as process_cpu), off-CPU
// time is `off_cpu/nanoseconds` (Pyroscope's offcpu); other types keep their
// pprof names. Sample labels become sample attributes under the same names,
// a mapping's build ID the attribute process.executable.build_id.gnu, a
// kernel frame's location the attribute profile.frame.type=kernel; the
// resource carries service.name, host.name, process.pid and container.id as
// the OpenTelemetry profiler sets them. Following the protocol, entry 0 of
// every dictionary table is the empty value.
//
// ToPprof reads a request back: the round trip tests compare it with the
// pprof of the same recording, and since a request may come from anywhere it
// checks every index, never panics, and has a fuzz target.
package otlp
