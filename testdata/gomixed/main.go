// gomixed is the Go workload that Ember's Go unwinding is held against.
//
//	gomixed [split] SECONDS
//
// runs workA, workB and workC, which call leaf with 6, 3 and 1 units: leaf
// is a frameless leaf (no locals, no calls: the compiler gives it no frame
// and so no frame pointer), so a frame-pointer walk loses its caller, and
// its callers' known shares are 60%, 30% and 10%.
//
//	gomixed mixed CPU-SECONDS HZ OUT [WORKERS]
//
// profiles itself with runtime/pprof at HZ samples per second (set with
// runtime.SetCPUProfileRate before pprof.StartCPUProfile, which then warns
// that the rate is already set and keeps it) while it runs a mixed
// workload: JSON encoding and decoding, sha256, sorting, map inserts,
// regular expressions and the frameless leaf, on WORKERS goroutines (1),
// until the process has used CPU-SECONDS of CPU time (so that both profiles
// get the samples their tolerance needs however busy the machine is; at
// most ten times as long in wall time); Go's profile goes to OUT. (Go's profiling timers measure thread CPU time,
// which the kernel checks at each tick: with CONFIG_HZ=250 a thread gets at
// most 250 samples a second, whatever HZ asks.)
// Ember records the same process at the same time, and the test compares
// the two.
package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"
)

const unit = 100000

var sink uint64

// leaf has no frame: it neither calls nor spills.
//
//go:noinline
func leaf(n int, x uint64) uint64 {
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

//go:noinline
func workA() { sink = leaf(6*unit, sink) }

//go:noinline
func workB() { sink = leaf(3*unit, sink) }

//go:noinline
func workC() { sink = leaf(1*unit, sink) }

type record struct {
	Name  string            `json:"name"`
	ID    int               `json:"id"`
	Tags  []string          `json:"tags"`
	Attrs map[string]string `json:"attrs"`
	Score float64           `json:"score"`
}

var records = func() []record {
	rs := make([]record, 64)
	for i := range rs {
		rs[i] = record{Name: "record-" + strconv.Itoa(i), ID: i, Tags: []string{"a", "bb", "ccc"},
			Attrs: map[string]string{"k": "v", "key": strconv.Itoa(i * 7)}, Score: float64(i) / 3}
	}
	return rs
}()

//go:noinline
func doJSON() {
	b, err := json.Marshal(records)
	if err != nil {
		panic(err)
	}
	var back []record
	if err := json.Unmarshal(b, &back); err != nil {
		panic(err)
	}
	sink += uint64(len(back))
}

var buf = make([]byte, 64<<10)

//go:noinline
func doSHA() {
	for i := 0; i < 4; i++ {
		s := sha256.Sum256(buf)
		sink += uint64(s[0])
	}
}

//go:noinline
func doSort() {
	xs := make([]int, 20000)
	x := sink
	for i := range xs {
		x = x*6364136223846793005 + 1442695040888963407
		xs[i] = int(x >> 33)
	}
	sort.Ints(xs)
	sink += uint64(xs[0])
}

//go:noinline
func doMap() {
	m := make(map[uint64]int)
	x := sink
	for i := 0; i < 20000; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		m[x>>40] = i
	}
	sink += uint64(len(m))
}

var re = regexp.MustCompile(`([a-z]+)-(\d+)@([a-z]+)\.example\.(com|org)`)
var text = func() string {
	s := ""
	for i := 0; i < 200; i++ {
		s += fmt.Sprintf("noise %d user-%d@host.example.org more text ", i, i)
	}
	return s
}()

//go:noinline
func doRegexp() {
	sink += uint64(len(re.FindAllStringSubmatchIndex(text, -1)))
}

//go:noinline
func doLeaf() { workB() }

// mixed runs the tasks in a random order until the deadline. Not in a
// fixed cycle: a loop of fixed period sampled at a fixed period aliases,
// and two samplers of different phase (Go's timer fires at the kernel's
// ticks, Ember's at its own hrtimer) then see different shares of the same
// run (6 points apart in a trial).
func mixed(done func() bool, seed uint64) {
	tasks := []func(){doJSON, doSHA, doSort, doMap, doRegexp, doLeaf}
	x := seed
	for !done() {
		x = x*6364136223846793005 + 1442695040888963407
		tasks[(x>>33)%uint64(len(tasks))]()
	}
}

func main() {
	if len(os.Args) == 2 { // gomixed SECONDS, as the C chain workloads take
		os.Args = []string{os.Args[0], "split", os.Args[1]}
	}
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: gomixed [split] SECONDS | gomixed mixed SECONDS HZ OUT")
		os.Exit(2)
	}
	secs, _ := strconv.ParseFloat(os.Args[2], 64)
	deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
	switch os.Args[1] {
	case "split":
		for time.Now().Before(deadline) {
			workA()
			workB()
			workC()
		}
	case "mixed":
		hz, _ := strconv.Atoi(os.Args[3])
		f, err := os.Create(os.Args[4])
		if err != nil {
			panic(err)
		}
		runtime.SetCPUProfileRate(hz)
		if err := pprof.StartCPUProfile(f); err != nil {
			panic(err)
		}
		cpu := time.Duration(secs * float64(time.Second))
		wall := time.Now().Add(10 * cpu)
		done := func() bool {
			var ru syscall.Rusage
			if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
				panic(err)
			}
			used := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			return used >= cpu || time.Now().After(wall)
		}
		workers := 1
		if len(os.Args) > 5 {
			workers, _ = strconv.Atoi(os.Args[5])
		}
		var wg sync.WaitGroup
		for i := 0; i < max(workers, 1); i++ {
			wg.Add(1)
			go func(seed uint64) {
				defer wg.Done()
				mixed(done, seed)
			}(uint64(i + 1))
		}
		wg.Wait()
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			panic(err)
		}
	}
	fmt.Println(sink)
}
