// goshort runs for MILLISECONDS (50 by default) in main.hot, called through
// main.level3 <- main.level2 <- main.level1 <- main.main, from its start: no
// warm-up, so a profiler meets it only as it runs. main.hot is a frameless
// leaf (no locals, no calls), so a frame-pointer walk loses its caller; the
// table from the pclntab keeps it. Tests of a process's first samples
// (issue #15) run it hundreds of times.
//
//	goshort [MILLISECONDS]
package main

import (
	"os"
	"strconv"
	"time"
)

var sink uint64

// hot has no frame: it neither calls nor spills.
//
//go:noinline
func hot(n int, x uint64) uint64 {
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

//go:noinline
func level3(x uint64) uint64 { return hot(20000, x^3) + sink }

//go:noinline
func level2(x uint64) uint64 { return level3(x^2)*3 + sink }

//go:noinline
func level1(x uint64) uint64 { return level2(x^1)*5 + sink }

func main() {
	ms := 50.0
	if len(os.Args) > 1 {
		if v, err := strconv.ParseFloat(os.Args[1], 64); err == nil {
			ms = v
		}
	}
	end := time.Now().Add(time.Duration(ms * float64(time.Millisecond)))
	for time.Now().Before(end) {
		sink += level1(sink)
	}
}
