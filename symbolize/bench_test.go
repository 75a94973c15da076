package symbolize

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// benchAddresses is how many shuffled addresses each tool symbolizes.
const benchAddresses = 10000

// benchCandidates are where BenchmarkVsLLVM looks for the binary with the
// most DWARF (by .debug_info size) when EMBER_BENCH_BINARY is not set.
var benchCandidates = []string{
	"/usr/bin/*", "/usr/local/bin/*", "/usr/lib/x86_64-linux-gnu/*.so*", "/usr/local/lib/*.so*",
	"/usr/lib/debug/.build-id/*/*.debug", "/root/.pyenv/versions/*/lib/*.so*",
	"/root/.rustup/toolchains/*/bin/*", "/root/.rustup/toolchains/*/lib/*.so",
}

// largestDWARF returns the ELF file with the largest .debug_info among the
// candidates (which holds code: a .text section).
func largestDWARF(tb testing.TB) (string, uint64) {
	if p := os.Getenv("EMBER_BENCH_BINARY"); p != "" {
		var size uint64
		if ef, err := elf.Open(p); err == nil {
			if s := ef.Section(".debug_info"); s != nil {
				size = s.Size
			}
			ef.Close()
		}
		return p, size
	}
	var best string
	var bestSize uint64
	for _, pat := range benchCandidates {
		files, _ := filepath.Glob(pat)
		for _, f := range files {
			st, err := os.Stat(f)
			if err != nil || !st.Mode().IsRegular() || st.Size() < 1<<20 {
				continue
			}
			ef, err := elf.Open(f)
			if err != nil {
				continue
			}
			if s := ef.Section(".debug_info"); s != nil && ef.Section(".text") != nil && s.Size > bestSize {
				best, bestSize = f, s.Size
			}
			ef.Close()
		}
	}
	if best == "" {
		tb.Skip("no binary with DWARF found; set EMBER_BENCH_BINARY")
	}
	return best, bestSize
}

type toolRun struct {
	name     string
	cmd      []string
	env      []string
	cold     time.Duration // one address: start, open, answer
	total    time.Duration // all addresses
	coldCPU  time.Duration // user+system CPU time of the same runs
	totalCPU time.Duration
	maxRSSKB int64
	out      []byte
}

func (r *toolRun) run(tb testing.TB, input []byte) (time.Duration, time.Duration, int64, []byte) {
	cmd := exec.Command(r.cmd[0], r.cmd[1:]...)
	cmd.Env = append(os.Environ(), r.env...)
	cmd.Stdin = bytes.NewReader(input)
	var out bytes.Buffer
	cmd.Stdout = &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s: %v", r.name, err)
	}
	d := time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return d, cpu, ru.Maxrss, out.Bytes()
}

// BenchmarkVsLLVM symbolizes the same shuffled addresses of the largest
// DWARF binary on the machine with ember (this test binary re-executed as
// `ember symbolize --exe`), llvm-symbolizer-19 and addr2line -i -f, each in
// its own process, and prints time per address, cold-open time and peak RSS,
// with ratios to llvm-symbolizer. Run with:
//
//	go test ./symbolize -run '^$' -bench BenchmarkVsLLVM -benchtime 1x -v
func BenchmarkVsLLVM(b *testing.B) {
	llvm := requireTool(b, "llvm-symbolizer-19")
	a2l := requireTool(b, "addr2line")
	bin, infoSize := largestDWARF(b)
	addrs := textAddresses(b, bin, benchAddresses)
	var in bytes.Buffer
	for _, a := range addrs {
		fmt.Fprintf(&in, "0x%x\n", a)
	}
	first := []byte(fmt.Sprintf("0x%x\n", addrs[0]))
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	tools := []*toolRun{
		{name: "ember", cmd: []string{self}, env: []string{childEnv + "=" + bin}},
		{name: "llvm-symbolizer-19", cmd: []string{llvm, "--obj=" + bin}},
		{name: "addr2line -i -f", cmd: []string{a2l, "-i", "-f", "-e", bin}},
	}
	for i := 0; i < b.N; i++ {
		for _, t := range tools {
			// Warm the page cache for every tool alike, then measure.
			t.run(b, first)
			t.cold, t.coldCPU, _, _ = t.run(b, first)
			t.total, t.totalCPU, t.maxRSSKB, t.out = t.run(b, in.Bytes())
		}
	}
	b.StopTimer()
	agree := llvmTextAgreement(tools[0].out, tools[1].out)
	base := tools[1]
	perAddr := func(t *toolRun) float64 {
		return float64(t.total-t.cold) / float64(len(addrs)-1)
	}
	cpuPerAddr := func(t *toolRun) float64 {
		return float64(t.totalCPU-t.coldCPU) / float64(len(addrs)-1)
	}
	b.Logf("binary %s (.debug_info %d bytes), %d shuffled addresses; ember's output equals llvm-symbolizer's for %.2f%% of them",
		bin, infoSize, len(addrs), agree)
	b.Logf("wall time per address and cold open (one address: exec, open, answer); CPU time (user+sys) likewise; peak RSS")
	b.Logf("%-20s %10s %7s %10s %7s %12s %7s %12s %7s %10s %7s", "tool", "ns/addr", "x llvm", "cpu-ns/addr", "x llvm",
		"cold-open", "x llvm", "cold-cpu", "x llvm", "peak RSS", "x llvm")
	for _, t := range tools {
		b.Logf("%-20s %10.0f %7.2f %10.0f %7.2f %12s %7.2f %12s %7.2f %7dKiB %7.2f", t.name,
			perAddr(t), perAddr(t)/perAddr(base), cpuPerAddr(t), cpuPerAddr(t)/cpuPerAddr(base),
			t.cold.Round(time.Microsecond), float64(t.cold)/float64(base.cold),
			t.coldCPU.Round(time.Microsecond), float64(t.coldCPU)/float64(base.coldCPU),
			t.maxRSSKB, float64(t.maxRSSKB)/float64(base.maxRSSKB))
	}
	b.ReportMetric(perAddr(tools[0]), "ember-ns/addr")
	b.ReportMetric(perAddr(base), "llvm-ns/addr")
	b.ReportMetric(perAddr(tools[0])/perAddr(base), "time-ratio")
	b.ReportMetric(cpuPerAddr(tools[0])/cpuPerAddr(base), "cpu-ratio")
	b.ReportMetric(float64(tools[0].maxRSSKB)/float64(base.maxRSSKB), "rss-ratio")
	b.ReportMetric(float64(tools[0].cold)/float64(base.cold), "cold-ratio")
}

// llvmTextAgreement is the percentage of address blocks on which two
// llvm-symbolizer-form outputs are identical.
func llvmTextAgreement(a, b []byte) float64 {
	ba := strings.Split(string(a), "\n\n")
	bb := strings.Split(string(b), "\n\n")
	n := min(len(ba), len(bb))
	same := 0
	for i := 0; i < n; i++ {
		if ba[i] == bb[i] {
			same++
		}
	}
	return 100 * float64(same) / float64(max(len(ba), len(bb)))
}

// BenchmarkObjectFrames measures warm lookups in one process: Frames on
// shuffled addresses of the C++ test binary.
func BenchmarkObjectFrames(b *testing.B) {
	path, _ := cxxBuild("g++", "-O2", "-g")(b)
	o, err := OpenObject(path)
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	addrs := textAddresses(b, path, 4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o.Frames(addrs[i%len(addrs)])
	}
}

// BenchmarkObjectFramesGo measures warm pclntab lookups (with inline tree)
// on shuffled addresses of the stripped Go test binary.
func BenchmarkObjectFramesGo(b *testing.B) {
	path, full := goBuild(true)(b)
	o, err := OpenObject(path)
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	addrs := textAddresses(b, full, 4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o.Frames(addrs[i%len(addrs)])
	}
}

// BenchmarkSymbolizeProfile symbolizes a profile of 10,000 locations in one
// mapping of the largest DWARF binary, cold (a new Symbolizer each time):
// the path the agent takes, sorted addresses in one pass.
func BenchmarkSymbolizeProfile(b *testing.B) {
	bin, _ := largestDWARF(b)
	addrs := textAddresses(b, bin, benchAddresses)
	ef, err := elf.Open(bin)
	if err != nil {
		b.Fatal(err)
	}
	var text *elf.Prog
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 {
			text = p
		}
	}
	ef.Close()
	const base = 0x7f0000000000
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		m := &profile.Mapping{ID: 1, Start: base + text.Vaddr&^0xfff, Limit: base + text.Vaddr + text.Memsz, Offset: text.Off &^ 0xfff, File: bin}
		p := &profile.Profile{Mapping: []*profile.Mapping{m}}
		for j, a := range addrs {
			p.Location = append(p.Location, &profile.Location{ID: uint64(j + 1), Address: base + a, Mapping: m})
		}
		s := New(Options{})
		b.StartTimer()
		if err := s.Symbolize(p); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if len(p.Location[0].Line) == 0 {
			b.Fatal("not symbolized")
		}
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(addrs)), "ns/location")
}
