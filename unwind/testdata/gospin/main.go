// Command gospin is the Go workload of the unwinder tests: with "spin" it
// prints "ready" and spins for ever in main.hot, called through a known
// chain, on the process's main thread (so that PTRACE_ATTACH on the pid
// stops the thread running it).
package main

import (
	"fmt"
	"os"
	"runtime"
)

func init() { runtime.LockOSThread() } // keep main.main on the main thread

var sink uint64

//go:noinline
func hot(n uint64) {
	for {
		n = n*6364136223846793005 + 1442695040888963407
		sink = n
	}
}

//go:noinline
func level2(n uint64) uint64 {
	fmt.Println("ready")
	hot(n + 1)
	return n
}

//go:noinline
func level1(n uint64) uint64 { return level2(n*3) + 1 }

func main() {
	if len(os.Args) > 1 && os.Args[1] == "spin" {
		fmt.Println(level1(uint64(len(os.Args))))
	}
}
