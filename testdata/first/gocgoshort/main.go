// gocgoshort runs for MILLISECONDS (50 by default) in the C function c_hot,
// called through c_mid <- (cgo) main.goLevel <- main.main, from its start:
// no warm-up, so a profiler meets it only as it runs, and its first samples
// are taken on the system stack that cgo switched to (runtime.asmcgocall).
// The C code has no frame pointers, as distributions build it. Tests of a
// process's first samples (issue #15) run it hundreds of times.
//
//	gocgoshort [MILLISECONDS]
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
	"os"
	"strconv"
	"time"
)

var sink uint64

//go:noinline
func goLevel() { sink = uint64(C.c_mid(C.uint64_t(sink), 20000)) }

func main() {
	ms := 50.0
	if len(os.Args) > 1 {
		if v, err := strconv.ParseFloat(os.Args[1], 64); err == nil {
			ms = v
		}
	}
	end := time.Now().Add(time.Duration(ms * float64(time.Millisecond)))
	for time.Now().Before(end) {
		goLevel()
	}
}
