// gosplit is a Go workload with a known CPU split: each round runs workA,
// workB and workC with 6, 3 and 1 units of the same spin, so their inclusive
// shares of CPU time are 60%, 30% and 10%. Tests build it stripped
// (-ldflags=-s -w) to show that names come from the pclntab.
//
// usage: gosplit SECONDS [GOROUTINES]
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

const unit = 200000

var sink uint64

// spin ends with a call so that it is not a frameless leaf: Go omits the
// frame pointer of leaves without a frame, and a frame-pointer unwinder then
// skips their caller.
//
//go:noinline
func spin(units int) {
	x := sink
	for i := 0; i < units*unit; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	store(x)
}

//go:noinline
func store(x uint64) { sink = x }

//go:noinline
func workA() { spin(6) }

//go:noinline
func workB() { spin(3) }

//go:noinline
func workC() { spin(1) }

func main() {
	secs := 5.0
	if len(os.Args) > 1 {
		secs, _ = strconv.ParseFloat(os.Args[1], 64)
	}
	n := 1
	if len(os.Args) > 2 {
		n, _ = strconv.Atoi(os.Args[2])
	}
	deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				workA()
				workB()
				workC()
			}
		}()
	}
	wg.Wait()
	fmt.Println(sink)
}
