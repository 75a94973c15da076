package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startSelfProfile starts a runtime/pprof CPU profile of Ember itself into
// file (record --self-profile), so that its own cost, start-up included, can
// be read with go tool pprof; "" profiles nothing. The returned stop writes
// the profile out, and what Ember allocated over the run (the allocs
// profile) to file+".allocs": much of Ember's CPU is its garbage collector,
// whose cost follows from the allocations. It may be called more than once.
func startSelfProfile(file string) (stop func(), err error) {
	if file == "" {
		return func() {}, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("--self-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--self-profile: %w", err)
	}
	done := false
	return func() {
		if done {
			return
		}
		done = true
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "ember: --self-profile:", err)
		}
		if err := writeAllocs(file + ".allocs"); err != nil {
			fmt.Fprintln(os.Stderr, "ember: --self-profile:", err)
		}
	}, nil
}

// writeAllocs writes the allocs profile (every sampled allocation since the
// start, live or not) to file.
func writeAllocs(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
