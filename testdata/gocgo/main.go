// gocgo is a cgo workload for Ember's Go unwinding: main.goLevel calls the C
// function c_mid through cgo, which calls c_hot, where the time goes (C
// without frame pointers, as distributions build it). A
// walk from c_hot needs the C code's .eh_frame rows, then the switch from
// the system stack (asmcgocall) back to the goroutine's, then the Go code's
// pclntab rows. It first spins for 0.3 s in Go (warmup), as
// testdata/unwind/chain.c does, so that the profiler has loaded its tables
// before the cgo loop: the test measures the walk across the stacks, not a
// process's first samples (those are walked from copies of the system stack,
// which end at asmcgocall; TestFirstSamples measures first samples).
//
// usage: gocgo SECONDS
package main

/*
#cgo CFLAGS: -O2 -fomit-frame-pointer
#include <stdint.h>

__attribute__((noinline)) uint64_t c_hot(uint64_t x, long n) {
	for (long i = 0; i < n; i++)
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	return x;
}

__attribute__((noinline)) uint64_t c_mid(uint64_t x, long n) {
	return c_hot(x, n) + 1;
}
*/
import "C"

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

var sink uint64

//go:noinline
func goLevel() { sink = uint64(C.c_mid(C.uint64_t(sink), 2000000)) }

//go:noinline
func warmup(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
		sink = sink*6364136223846793005 + 1
	}
}

func main() {
	secs := 3.0
	if len(os.Args) > 1 {
		secs, _ = strconv.ParseFloat(os.Args[1], 64)
	}
	warmup(300 * time.Millisecond)
	deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
	for time.Now().Before(deadline) {
		goLevel()
	}
	fmt.Println(sink)
}
