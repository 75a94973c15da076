// Command goarm64 is cross-compiled for linux/arm64 by the tests, for its
// .debug_frame: leaf functions (RA in x30) and framed ones (RA saved).
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

//go:noinline
func leaf(x int) int { return x*3 + 1 }

//go:noinline
func mid(x int) int {
	var a [16]int
	for i := range a {
		a[i] = leaf(x + i)
	}
	return a[3] + a[x&15]
}

func main() {
	words := strings.Fields(strings.Repeat("b a c ", len(os.Args)))
	sort.Strings(words)
	fmt.Println(mid(len(words)), words[0])
}
