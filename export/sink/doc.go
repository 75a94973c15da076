// Package sink defines what the agent hands to the places profiles go.
//
// The agent drains the kernel maps every interval, builds one profile per
// service and kind (on-CPU, off-CPU), and passes each to every configured
// sink: a rotating directory of pprof files (package filesink), a Pyroscope
// server (package pyroscope), or both. Sinks share one value type, Profile,
// and one small interface, Sink, so the agent does not care which sinks are
// configured, and Multi fans one profile out to all of them.
//
// A sink never keeps the *profile.Profile it is given: it encodes what it
// needs before Enqueue returns. Encoding a google/pprof profile writes to
// fields inside it, so a profile must not be handed to two sinks at the same
// time; Multi calls its sinks one after another.
package sink
