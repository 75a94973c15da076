// Package filesink writes profiles to a directory of gzipped pprof files
// and keeps that directory bounded.
//
// Each profile becomes one file named by its time and service,
//
//	20261122T021126.123Z_checkout_process_cpu.pb.gz
//
// (UTC end of the interval, the service name made safe for a file name, the
// profile's kind), so that ls lists them in time order and `go tool pprof`
// opens any of them. A file appears whole or not at all: it is written under
// a temporary name, synced, and linked into place. The series labels (pid,
// comm, hostname, --label) are kept in the profile's comments.
//
// After every write, and at start, the sink deletes its own files older than
// MaxAge and then, oldest first, as many as it takes to bring their total
// size under MaxBytes; the newest file is always kept. It never touches a
// file whose name is not one it would write.
package filesink
