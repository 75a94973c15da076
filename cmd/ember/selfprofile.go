package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// startSelfProfile starts a runtime/pprof CPU profile of Ember itself into
// file (record --self-profile), so that its own cost, start-up included, can
// be read with go tool pprof; "" profiles nothing. The returned stop writes
// the profile out and may be called more than once.
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
	}, nil
}
