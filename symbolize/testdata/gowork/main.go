// Command gowork is a Go workload with functions the compiler inlines, for
// the symbolizer's pclntab tests.
package main

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"
)

type point struct{ x, y float64 }

func sq(v float64) float64 { return v * v }

func dist2(a, b point) float64 { return sq(a.x-b.x) + sq(a.y-b.y) }

//go:noinline
func nearest(ps []point, q point) float64 {
	best := 1e300
	for _, p := range ps {
		if d := dist2(p, q); d < best {
			best = d
		}
	}
	return best
}

//go:noinline
func words(s string) map[string]int {
	m := make(map[string]int)
	for _, w := range strings.Fields(s) {
		m[strings.ToLower(w)]++
	}
	return m
}

func main() {
	n := 1000 * len(os.Args)
	ps := make([]point, n)
	for i := range ps {
		ps[i] = point{float64(i) / 2, float64(i) / 4}
	}
	m := words(strings.Repeat("The quick brown fox jumps over the lazy dog ", n/100))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Println(nearest(ps, point{3, 4}), keys)
	if len(os.Args) > 2 && os.Args[2] == "wait" {
		// Wait for the test: print our own address and sleep.
		fmt.Printf("nearest=%#x\n", reflect.ValueOf(nearest).Pointer())
		time.Sleep(time.Minute)
	}
}
