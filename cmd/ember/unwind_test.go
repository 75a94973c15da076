package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/internal/agent"
	"github.com/emberprof/ember/internal/testutil"
)

// Table unwinding (--unwind tables) against frame pointers (--unwind fp) on
// workloads where frame pointers lose frames. Every workload spends its time
// in one hot function reached through a known chain of calls; a sample is
// complete when its stack holds the whole chain, in order, from the hot
// function up to main. Run with -v to see the shares.

// chainWorkload is a program built at test time and its known chain, leaf
// first. Frames of system libraries may sit between the links.
type chainWorkload struct {
	name  string
	build func(t testing.TB, dir string) string
	chain []string
}

var chainWorkloads = []chainWorkload{
	{
		name: "c-O2-omit-frame-pointer",
		build: func(t testing.TB, dir string) string {
			return testutil.BuildC(t, filepath.Join(dir, "chain"), []string{"-O2", "-g", "-fomit-frame-pointer"}, "unwind/chain.c")
		},
		chain: []string{"hot", "level3", "level2", "level1", "main"},
	},
	{
		// Frame pointers everywhere but in the leaf: a frame-pointer walk
		// skips the leaf's caller.
		name: "c-O1-frameless-leaf",
		build: func(t testing.TB, dir string) string {
			return testutil.BuildC(t, filepath.Join(dir, "chain"), []string{"-O1", "-g", "-fno-omit-frame-pointer", "-momit-leaf-frame-pointer"}, "unwind/chain.c")
		},
		chain: []string{"hot", "level3", "level2", "level1", "main"},
	},
	{
		name: "cxx-libstdc++-callback",
		build: func(t testing.TB, dir string) string {
			return testutil.BuildCC(t, "g++", filepath.Join(dir, "streambuf"), []string{"-O2", "-g"}, "unwind/streambuf.cc")
		},
		chain: []string{"Sink::overflow", "std::basic_streambuf", "std::ostream::write|std::basic_ostream", "emit", "run", "main"},
	},
	{
		name: "c-libc-qsort-callback",
		build: func(t testing.TB, dir string) string {
			return testutil.BuildC(t, filepath.Join(dir, "sortcb"), []string{"-O2", "-g"}, "unwind/sortcb.c")
		},
		// glibc 2.36 calls it __qsort_r (perf: __GI___qsort_r).
		chain: []string{"compare", "qsort|qsort_r|__qsort_r|__GI___qsort_r", "sort_all", "run", "main"},
	},
	{
		// Go, stripped: main.leaf has no frame, so a frame-pointer walk
		// skips its caller; the table from the pclntab does not.
		name: "go-frameless-leaf-stripped",
		build: func(t testing.TB, dir string) string {
			return testutil.BuildGo(t, filepath.Join(dir, "gomixed"), []string{"-ldflags=-s -w"}, "gomixed")
		},
		chain: []string{"main.leaf", "main.workA|main.workB|main.workC", "main.main", "runtime.main"},
	},
	{
		// cgo: C without frame pointers (rows from .eh_frame) called from
		// Go (rows from the pclntab) across asmcgocall's switch of stacks.
		name: "go-cgo",
		build: func(t testing.TB, dir string) string {
			return testutil.BuildGo(t, filepath.Join(dir, "gocgo"), nil, "gocgo")
		},
		chain: []string{"c_hot", "c_mid", "runtime.asmcgocall", "main.goLevel", "main.main", "runtime.main"},
	},
}

// frameIs reports whether a symbolized frame is the function want, one of
// a "|"-separated list: the same name, or a C++ name with that prefix
// (demangled names carry parameters and templates).
func frameIs(frame, want string) bool {
	for _, w := range strings.Split(want, "|") {
		if frame == w {
			return true
		}
		if rest, ok := strings.CutPrefix(frame, w); ok && (strings.ContainsAny(rest[:1], "(<:") || strings.HasPrefix(w, "std::")) {
			return true
		}
	}
	return false
}

// hasChain reports whether frames (leaf first) hold chain in order, starting
// at the first frame that is chain[0]; other frames may sit between links.
// The second result says whether chain[0] is there at all.
func hasChain(frames, chain []string) (complete, hot bool) {
	i := 0
	for ; i < len(frames) && !frameIs(frames[i], chain[0]); i++ {
	}
	if i == len(frames) {
		return false, false
	}
	k := 1
	for i++; i < len(frames) && k < len(chain); i++ {
		if frameIs(frames[i], chain[k]) {
			k++
		}
	}
	return k == len(chain), true
}

// chainShare returns, over the samples that hold the hot function, the share
// whose stacks hold the whole chain, and the number of those samples. Samples
// marked as walked with frame pointers because the process's tables were not
// loaded yet (its first milliseconds: counted and marked, issue #15's
// window) are not the table walker's and are left out.
func chainShare(p *profile.Profile, chain []string) (float64, int64) {
	idx := testutil.SampleIndex(p, "samples")
	var hot, full int64
	for _, s := range p.Sample {
		frames := testutil.Frames(s)
		if slices.Contains(frames, agent.FPFallbackFrame) {
			continue
		}
		c, h := hasChain(frames, chain)
		if h {
			hot += s.Value[idx]
		}
		if c {
			full += s.Value[idx]
		}
	}
	if hot == 0 {
		return 0, 0
	}
	return float64(full) / float64(hot), hot
}

// recordChain records bin for seconds with an unwind mode and returns the
// profile and ember's stderr.
func recordChain(t *testing.T, dir, bin, mode string, seconds int, extra ...string) (*profile.Profile, string) {
	out := filepath.Join(dir, fmt.Sprintf("%s-%s.pb.gz", filepath.Base(bin), mode))
	args := append([]string{"record", "-F", "499", "--unwind", mode, "-o", out}, extra...)
	args = append(args, "--", bin, strconv.Itoa(seconds))
	stderr := runEmber(t, dir, args...)
	return readProfile(t, out), stderr
}

func TestUnwindTablesCompleteChains(t *testing.T) {
	testutil.RequireRoot(t)
	for _, w := range chainWorkloads {
		t.Run(w.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := w.build(t, dir)
			pt, _ := recordChain(t, dir, bin, "tables", 3)
			pf, _ := recordChain(t, dir, bin, "fp", 3)
			tables, n := chainShare(pt, w.chain)
			fp, nfp := chainShare(pf, w.chain)
			t.Logf("%s: full chain %s in %.2f%% of %d samples with tables, %.2f%% of %d with frame pointers",
				w.name, strings.Join(w.chain, " <- "), 100*tables, n, 100*fp, nfp)
			if n < 300 {
				t.Fatalf("only %d samples in %s with tables; want 300 for a 1%% tolerance", n, w.chain[0])
			}
			if tables < 0.99 {
				logIncomplete(t, pt, w.chain)
				t.Errorf("tables: full chain in %.2f%% of samples, want >= 99%%", 100*tables)
			}
			if fp >= tables {
				t.Errorf("frame pointers found the full chain as often (%.2f%%) as tables (%.2f%%): the workload does not test unwinding", 100*fp, 100*tables)
			}
		})
	}
}

// Off-CPU user stacks, taken when a block ends, are walked with tables too:
// a thread napping in libc's nanosleep is attributed to its whole chain.
func TestUnwindTablesOffCPU(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := testutil.BuildC(t, filepath.Join(dir, "sleeper"), []string{"-O2", "-g", "-fomit-frame-pointer"}, "unwind/sleeper.c")
	chain := []string{"nap", "level3", "level2", "level1", "main"}
	// The sleeper warms up (spinning, then napping outside the chain) so
	// that its tables are loaded, then renames its thread "napping": blocks
	// kept before a process's tables load are walked with frame pointers, a
	// start-up window this test leaves out by counting that thread only.
	for _, mode := range []string{"wall", "offcpu"} {
		t.Run(mode, func(t *testing.T) {
			share := func(unwind string) (float64, int64) {
				p, _ := recordChain(t, dir, bin, unwind, 3, "--mode", mode)
				idx := testutil.SampleIndex(p, "offcpu")
				var all, full int64
				for _, s := range p.Sample {
					if len(s.Label["state"]) != 1 || s.Label["state"][0] != "sleeping" ||
						len(s.Label["thread"]) != 1 || s.Label["thread"][0] != "napping" {
						continue
					}
					all += s.Value[idx]
					if c, _ := hasChain(testutil.Frames(s), chain); c {
						full += s.Value[idx]
					}
				}
				if all == 0 {
					t.Fatalf("%s: no sleeping off-CPU time recorded", unwind)
				}
				return float64(full) / float64(all), all
			}
			tables, nsT := share("tables")
			fp, nsF := share("fp")
			t.Logf("off-CPU: full chain %s in %.2f%% of %.2fs asleep with tables, %.2f%% of %.2fs with frame pointers",
				strings.Join(chain, " <- "), 100*tables, float64(nsT)/1e9, 100*fp, float64(nsF)/1e9)
			if nsT < 1e9 {
				t.Fatalf("only %.2fs of sleeping recorded, want 1s", float64(nsT)/1e9)
			}
			if tables < 0.99 {
				t.Errorf("tables: full chain in %.2f%% of off-CPU time, want >= 99%%", 100*tables)
			}
			if fp >= tables {
				t.Errorf("frame pointers found the chain as often (%.2f%%) as tables (%.2f%%)", 100*fp, 100*tables)
			}
		})
	}
}

// A walk that meets code no table covers (JIT code in an anonymous mapping)
// keeps the frames it found and ends the stack with a pseudo-frame that says
// why; the summary counts it.
func TestUnwindTablesMarksTruncated(t *testing.T) {
	testutil.RequireRoot(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("the workload writes x86-64 machine code")
	}
	dir := t.TempDir()
	bin := testutil.BuildC(t, filepath.Join(dir, "jit"), []string{"-O2", "-g"}, "unwind/jit.c")
	p, stderr := recordChain(t, dir, bin, "tables", 2)
	m := regexp.MustCompile(`unwind_truncated_no_mapping=(\d+)`).FindStringSubmatch(stderr)
	if m == nil || m[1] == "0" {
		t.Errorf("summary counts no walk truncated at unknown code:\n%s", stderr)
	}
	const pseudo = "[user stack truncated: code outside known mappings]"
	var hot, marked int64
	for _, s := range p.Sample {
		frames := testutil.Frames(s)
		if len(frames) == 0 || !slices.Contains(frames, "hot") {
			continue
		}
		hot += s.Value[0]
		if frames[len(frames)-1] == pseudo {
			marked += s.Value[0]
		}
	}
	t.Logf("%d of %d samples in hot end with %s", marked, hot, pseudo)
	if hot < 200 {
		t.Fatalf("only %d samples in hot", hot)
	}
	if float64(marked) < 0.95*float64(hot) {
		t.Errorf("%d of %d samples in hot marked truncated, want >= 95%%", marked, hot)
	}
}

// logIncomplete logs the commonest stacks that lack the chain.
func logIncomplete(t *testing.T, p *profile.Profile, chain []string) {
	t.Helper()
	counts := map[string]int64{}
	for _, s := range p.Sample {
		frames := testutil.Frames(s)
		if c, h := hasChain(frames, chain); h && !c {
			counts[strings.Join(frames, " <- ")] += s.Value[0]
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return counts[keys[i]] > counts[keys[j]] })
	for _, k := range keys[:min(5, len(keys))] {
		t.Logf("incomplete x%d: %s", counts[k], k)
	}
}

// chainsOf returns the shares of the distinct sequences of known function
// names (names, leaf first) in the stacks (frames, with weights) that hold
// the hot function.
func chainsOf(stacks [][]string, weights []int64, names []string) map[string]float64 {
	out := map[string]float64{}
	var total int64
	for i, frames := range stacks {
		var seq []string
		for _, f := range frames {
			for _, n := range names {
				if frameIs(f, n) {
					seq = append(seq, n)
				}
			}
		}
		if len(seq) == 0 || seq[0] != names[0] {
			continue
		}
		out[strings.Join(seq, " <- ")] += float64(weights[i])
		total += weights[i]
	}
	for k := range out {
		out[k] /= float64(total)
	}
	return out
}

// perf record --call-graph dwarf, on the same workload, finds the same
// chains as ember's table walk.
func TestUnwindTablesMatchPerfDwarf(t *testing.T) {
	testutil.RequireRoot(t)
	perf := testutil.RequireTool(t, "perf")
	w := chainWorkloads[3] // qsort: through the system libc
	dir := t.TempDir()
	bin := w.build(t, dir)
	p, _ := recordChain(t, dir, bin, "tables", 3)
	var stacks [][]string
	var weights []int64
	for _, s := range p.Sample {
		stacks = append(stacks, testutil.Frames(s))
		weights = append(weights, s.Value[0])
	}
	ember := chainsOf(stacks, weights, w.chain)

	data := filepath.Join(dir, "perf.data")
	// --no-buildid and FixPerfData: see FixPerfData.
	testutil.Run(t, dir, perf, "record", "-q", "--no-buildid", "-F", "499", "--call-graph", "dwarf", "-o", data, "--", bin, "3")
	testutil.FixPerfData(t, data)
	script := testutil.Run(t, dir, perf, "script", "-i", data, "-F", "comm,ip,sym")
	stacks, weights = parsePerfScript(script)
	perfChains := chainsOf(stacks, weights, w.chain)
	t.Logf("ember (tables): %v", ember)
	t.Logf("perf --call-graph dwarf (%d samples): %v", len(stacks), perfChains)
	full := strings.Join(w.chain, " <- ")
	if ember[full] < 0.99 {
		t.Errorf("ember: full chain in %.2f%% of samples, want >= 99%%", 100*ember[full])
	}
	if perfChains[full] < 0.9 {
		t.Errorf("perf: full chain in %.2f%% of samples; the comparison is meaningless", 100*perfChains[full])
	}
	// Every chain ember finds in more than 1% of samples, perf finds too.
	for c, share := range ember {
		if share > 0.01 && perfChains[c] == 0 {
			t.Errorf("ember finds %q in %.1f%% of samples, perf never", c, 100*share)
		}
	}
}

// parsePerfScript reads `perf script -F comm,ip,sym` output: a header line
// per sample, then one indented "ip sym" line per frame, leaf first.
func parsePerfScript(out string) (stacks [][]string, weights []int64) {
	var cur []string
	in := false
	flush := func() {
		if in {
			stacks = append(stacks, cur)
			weights = append(weights, 1)
		}
		cur, in = nil, false
	}
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == '\t' || line[0] == ' ':
			f := strings.Fields(line)
			if len(f) >= 2 {
				sym := f[1]
				if i := strings.Index(sym, "+0x"); i > 0 {
					sym = sym[:i]
				}
				cur = append(cur, sym)
			}
		default:
			flush()
			in = true
		}
	}
	flush()
	return stacks, weights
}

var (
	// The frame-pointer variant of the program is on_cpu_sample_fp.
	bpfRunRe  = regexp.MustCompile(`ember: bpf on_cpu_sample(?:_fp)?: \d+ runs, (\S+) run time`)
	samplesRe = regexp.MustCompile(`ember: (\d+) samples from`)
)

// BenchmarkUnwindCostPerSample reports the BPF run time per on-CPU sample
// (kernel program stats, --bpf-stats: on_cpu_sample's total run time over
// the samples it kept) with table unwinding and with frame pointers, on the
// same workloads, and their ratio:
//
//	go test -run '^$' -bench UnwindCost -benchtime 1x ./cmd/ember/
func BenchmarkUnwindCostPerSample(b *testing.B) {
	testutil.RequireRoot(b)
	dir := b.TempDir()
	for _, w := range chainWorkloads {
		b.Run(w.name, func(b *testing.B) {
			bin := w.build(b, dir)
			var runTime [2]time.Duration
			var samples [2]int
			for range b.N {
				for i, mode := range []string{"fp", "tables"} {
					stderr := runEmber(b, dir, "record", "-F", "499", "--bpf-stats", "--unwind", mode,
						"-o", filepath.Join(dir, mode+".pb.gz"), "--", bin, "3")
					m, n := bpfRunRe.FindStringSubmatch(stderr), samplesRe.FindStringSubmatch(stderr)
					if m == nil || n == nil {
						b.Fatalf("no on_cpu_sample run time or samples in:\n%s", stderr)
					}
					d, err := time.ParseDuration(m[1])
					if err != nil {
						b.Fatal(err)
					}
					k, _ := strconv.Atoi(n[1])
					runTime[i] += d
					samples[i] += k
				}
			}
			if samples[0] == 0 || samples[1] == 0 {
				b.Fatalf("no samples: %v", samples)
			}
			fp := float64(runTime[0].Nanoseconds()) / float64(samples[0])
			tables := float64(runTime[1].Nanoseconds()) / float64(samples[1])
			b.ReportMetric(fp, "fp-ns/sample")
			b.ReportMetric(tables, "tables-ns/sample")
			b.ReportMetric(tables/fp, "tables/fp")
		})
	}
}
