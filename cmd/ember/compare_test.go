package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emberprof/ember/internal/testutil"
)

// perfShares runs `perf script` on a perf.data file and returns inclusive
// shares of samples for names, and the sample count.
func perfShares(t *testing.T, data string, names []string) (map[string]float64, int) {
	t.Helper()
	out, err := exec.Command("perf", "script", "-i", data, "-F", "ip,sym").Output()
	if err != nil {
		t.Fatalf("perf script: %v", err)
	}
	counts := map[string]int{}
	total := 0
	var stack []string
	flush := func() {
		if len(stack) == 0 {
			return
		}
		total++
		for _, n := range names {
			for _, f := range stack {
				if f == n || strings.HasPrefix(f, n+"+") {
					counts[n]++
					break
				}
			}
		}
		stack = stack[:0]
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			flush()
			continue
		}
		if f := strings.Fields(line); len(f) >= 2 {
			stack = append(stack, f[1])
		}
	}
	flush()
	shares := map[string]float64{}
	for _, n := range names {
		if total > 0 {
			shares[n] = float64(counts[n]) / float64(total)
		}
	}
	return shares, total
}

// perf record -g and ember record sample the same run of the same workload at
// the same rate; their inclusive shares must agree within 3 points.
func TestAgreesWithPerf(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "perf")
	dir := t.TempDir()
	bin := buildCPUSplit(t, dir)
	data := filepath.Join(dir, "perf.data")
	// --no-buildid and FixPerfData: perf 6.1 aborts on the MMAP2 records of
	// a 6.18 build seen here (testutil.FixPerfData).
	perf := exec.Command("perf", "record", "--no-buildid", "-F", "997", "-e", "cpu-clock", "-g", "-o", data, "--", bin, "8", "2")
	var perfErr bytes.Buffer
	perf.Stderr = &perfErr
	if err := perf.Start(); err != nil {
		t.Fatal(err)
	}
	// perf forks the workload; find it as perf's child.
	var pid int
	for i := 0; i < 100 && pid == 0; i++ {
		time.Sleep(20 * time.Millisecond)
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(perf.Process.Pid), "task", strconv.Itoa(perf.Process.Pid), "children"))
		if f := strings.Fields(string(b)); len(f) > 0 {
			pid, _ = strconv.Atoi(f[0])
		}
	}
	if pid == 0 {
		t.Fatal("workload under perf not found")
	}
	out := filepath.Join(dir, "ember.pb.gz")
	runEmber(t, dir, "record", "-F", "997", "-d", "6s", "--pid", strconv.Itoa(pid), "-o", out)
	if err := perf.Wait(); err != nil {
		t.Fatalf("perf record: %v\n%s", err, perfErr.String())
	}
	testutil.FixPerfData(t, data)
	names := []string{"work_a", "work_b", "work_c"}
	ps, ptotal := perfShares(t, data, names)
	p := readProfile(t, out)
	es, etotal := testutil.Inclusive(p, testutil.SampleIndex(p, "samples"), nil, names...)
	t.Logf("perf: %d samples %v; ember: %d samples %v", ptotal, ps, etotal, es)
	if ptotal < 2000 || etotal < 2000 {
		t.Fatalf("too few samples for a 3-point tolerance: perf %d, ember %d", ptotal, etotal)
	}
	for _, n := range names {
		if d := ps[n] - es[n]; d > 0.03 || d < -0.03 {
			t.Errorf("%s: perf %.3f, ember %.3f", n, ps[n], es[n])
		}
	}
}
