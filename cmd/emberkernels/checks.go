package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A guestCheck is one row of a kernel's results, run inside the guest.
type guestCheck struct {
	name string
	run  func(g *guest, name string) result
}

// Deadlines inside the guest. Under TCG a guest runs several times slower
// than the host, and Ember's start (BTF parsing, program loads) is most of a
// short recording.
const (
	recordTimeout = 90 * time.Second
	testTimeout   = 240 * time.Second
)

// guestChecks are the checks in the order the guest runs them; their names
// are the rows of the expectation table (expect.go).
var guestChecks = []guestCheck{
	{"record-system", func(g *guest, n string) result {
		return g.recordWithLoad(n, "-d", "3s")
	}},
	{"record-pid", func(g *guest, n string) result {
		load, stop, err := g.background(n, guestTestdata+"/cpusplit", "120", "1")
		if err != nil {
			return fail("%v", err)
		}
		defer stop()
		return g.record(n, nil, "cpu", "", "-d", "3s", "--pid", fmt.Sprint(load.Process.Pid))
	}},
	{"record-command", cpuCommand()},
	{"unwind-fp", cpuCommand("--unwind", "fp")},
	{"unwind-tables", cpuCommand("--unwind", "tables")},
	{"offcpu-auto", offCPU("offcpu", "auto")},
	{"offcpu-task-work", offCPU("offcpu", "task-work")},
	{"offcpu-sys-exit", offCPU("offcpu", "sys-exit")},
	{"offcpu-raw-tp", offCPU("offcpu", "raw-tp")},
	{"wall-auto", offCPU("wall", "auto")},
	{"wall-task-work", offCPU("wall", "task-work")},
	{"wall-sys-exit", offCPU("wall", "sys-exit")},
	{"wall-raw-tp", offCPU("wall", "raw-tp")},
	{"agent", (*guest).agent},
	{"btf-flag", btfCheck(false)},
	{"btf-env", btfCheck(true)},
	// The cheap accuracy tests of cmd/ember, from its test binary: a known
	// CPU split of a C workload (±3 pp), and known blocked times (±5%) per
	// off-CPU method.
	{"test-cpusplit", emberTest(`^TestRecordCommandC$`)},
	{"test-offcpu-auto", emberTest(`^TestOffCPUKnownBlocks$/^auto$`)},
	{"test-offcpu-sys-exit", emberTest(`^TestOffCPUKnownBlocks$/^sys-exit$`)},
	{"test-offcpu-raw-tp", emberTest(`^TestOffCPUKnownBlocks$/^raw-tp$`)},
	{"dmesg", (*guest).dmesg},
}

// record runs `ember record -o FILE ARGS` and judges it by its summary:
// exit 0 and more than 0 samples (on-CPU), blocks (off-CPU) or both (wall),
// with the off-CPU method asked for (auto reports the one it picked).
func (g *guest) record(check string, env []string, mode, method string, args ...string) result {
	out := "/tmp/" + check + ".pb.gz"
	full := append([]string{"record", "-o", out}, args...)
	r := g.run(check, recordTimeout, env, guestEmber, full...)
	if r.err != nil {
		return refusal(r)
	}
	s := parseSummary(r.stderr)
	if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
		return fail("exit 0 but no profile written to %s", out)
	}
	switch {
	case mode != "offcpu" && s.samples == 0:
		return fail("0 samples: %s", firstLine(r.stderr))
	case mode != "cpu" && s.blocks == 0:
		return fail("0 off-CPU blocks: %s", firstLine(r.stderr))
	case method != "" && method != "auto" && s.method != method:
		return fail("asked for --offcpu-method %s, summary says method %q", method, s.method)
	}
	switch mode {
	case "offcpu":
		return pass("%d blocks, method %s", s.blocks, s.method)
	case "wall":
		return pass("%d samples, %d blocks, method %s", s.samples, s.blocks, s.method)
	}
	return pass("%d samples", s.samples)
}

// recordWithLoad records the whole system while a CPU-bound workload runs:
// an idle guest has nothing else to sample.
func (g *guest) recordWithLoad(check string, args ...string) result {
	_, stop, err := g.background(check, guestTestdata+"/cpusplit", "120", "1")
	if err != nil {
		return fail("%v", err)
	}
	defer stop()
	return g.record(check, nil, "cpu", "", args...)
}

// cpuCommand records the cpusplit workload as a command, with extra flags.
func cpuCommand(flags ...string) func(*guest, string) result {
	return func(g *guest, n string) result {
		args := append(append([]string{}, flags...), "--", guestTestdata+"/cpusplit", "2", "1")
		return g.record(n, nil, "cpu", "", args...)
	}
}

// offCPU records the blocker workload (threads that sleep, wait on pipes
// and burn CPU for known times) in mode with one off-CPU method.
func offCPU(mode, method string) func(*guest, string) result {
	return func(g *guest, n string) result {
		return g.record(n, nil, mode, method, "--mode", mode, "--offcpu-method", method, "--", guestTestdata+"/blocker", "2")
	}
}

// agent runs `ember agent --output-dir` beside a workload for a few
// intervals, then SIGTERM: it must exit 0 having written profiles.
func (g *guest) agent(check string) result {
	_, stop, err := g.background(check, guestTestdata+"/cpusplit", "120", "1")
	if err != nil {
		return fail("%v", err)
	}
	defer stop()
	dir := "/tmp/agent"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail("%v", err)
	}
	args := []string{"agent", "--output-dir", dir, "--interval", "2s"}
	g.logf(check, "$ %s %s", guestEmber, strings.Join(args, " "))
	cmd := exec.Command(guestEmber, args...)
	var stderr bytes.Buffer
	cmd.Stderr, cmd.Dir = &stderr, "/tmp"
	if err := cmd.Start(); err != nil {
		return fail("start the agent: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// A few intervals: until two profiles are written, or a deadline that
	// covers a slow start under TCG.
	deadline := time.Now().Add(60 * time.Second)
	var exited error
	waiting := true
	for waiting && len(outputFiles(dir)) < 2 && time.Now().Before(deadline) {
		select {
		case exited = <-done:
			waiting = false
		case <-time.After(500 * time.Millisecond):
		}
	}
	if !waiting {
		g.logf(check, "[stderr]\n%s", stderr.String())
		return fail("the agent exited before SIGTERM (%v): %s", exited, firstLine(stderr.String()))
	}
	g.logf(check, "%d files after %.1fs; SIGTERM", len(outputFiles(dir)), 60-time.Until(deadline).Seconds())
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case exited = <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		g.logf(check, "[stderr]\n%s", stderr.String())
		return fail("the agent did not exit within 30s of SIGTERM")
	}
	g.logf(check, "[stderr]\n%s", stderr.String())
	files := outputFiles(dir)
	for _, f := range files {
		g.logf(check, "wrote %s", f)
	}
	switch {
	case exited != nil:
		return fail("the agent exited with %v after SIGTERM: %s", exited, firstLine(stderr.String()))
	case len(files) < 2:
		return fail("%d profiles written in 2s intervals, want at least 2", len(files))
	}
	return pass("%d profiles written", len(files))
}

// emberTest runs one accuracy test of cmd/ember's test binary, built with
// the prebuilt ember and workloads of the initramfs (EMBER_BIN,
// EMBER_TESTDATA_BIN); a method the kernel lacks is not run (its record
// check already proved the refusal).
func emberTest(run string) func(*guest, string) result {
	return func(g *guest, n string) result {
		if expected(g.line, n) == U {
			return result{"skip", "not run: the kernel lacks the method (see the record check)"}
		}
		env := []string{"EMBER_REQUIRE_BPF=1", "EMBER_BIN=" + guestEmber, "EMBER_TESTDATA_BIN=" + guestTestdata}
		// Under emulation a guest's time is what the host leaves it: when the
		// host is busy, a workload's start-up and the profiler's (seconds to
		// the first sample under TCG) weigh on a few seconds of samples. A
		// failed accuracy test runs once more, and the row says so; two
		// failures fail the check.
		var first string
		for attempt := 1; attempt <= 2; attempt++ {
			r := g.run(n, testTimeout, env, guestEmberTest, "-test.run", run, "-test.v", "-test.count=1", "-test.timeout", "200s")
			out := r.stdout + r.stderr
			if r.err == nil && strings.Contains(out, "--- PASS") {
				if first != "" {
					return pass("%s (second run; the first: %s)", testSummary(out), first)
				}
				return pass("%s", testSummary(out))
			}
			if r.err == nil {
				return fail("no test ran (-test.run %s)", run)
			}
			if first != "" {
				return fail("%s (and the first run: %s)", testFailure(out), first)
			}
			first = testFailure(out)
		}
		return fail("%s", first)
	}
}

var (
	testErrorRe  = regexp.MustCompile(`^\s+\S+_test\.go:\d+: (.*)`)
	testBlocksRe = regexp.MustCompile(`\w+ off-CPU: [0-9.]+s measured, [0-9.]+s true \([-+0-9.]+%\)`)
	testSharesRe = regexp.MustCompile(`([0-9]+) samples; inclusive shares map\[([^]]*)\]`)
)

// testSummary picks the measurements a passing test logged: blocked times
// against the truth, or the CPU shares of the split.
func testSummary(out string) string {
	var parts []string
	for _, l := range strings.Split(out, "\n") {
		if m := testBlocksRe.FindString(l); m != "" {
			parts = append(parts, m)
		}
		if m := testSharesRe.FindStringSubmatch(l); m != nil {
			shares := []string{m[1] + " samples:"}
			for _, kv := range strings.Fields(m[2]) {
				if k, v, ok := strings.Cut(kv, ":"); ok && len(v) > 5 {
					kv = k + " " + v[:5]
				}
				shares = append(shares, kv)
			}
			parts = append(parts, strings.Join(shares, " "))
		}
	}
	return strings.Join(parts, "; ")
}

// testFailure is the first error a failing test reported: an assertion
// (t.Errorf, t.Fatalf) rather than the measurements it logged, else a panic
// or the first --- FAIL line.
func testFailure(out string) string {
	lines := strings.Split(out, "\n")
	for _, l := range lines {
		m := testErrorRe.FindStringSubmatch(l)
		if m == nil || testBlocksRe.MatchString(l) || testSharesRe.MatchString(l) {
			continue
		}
		for _, k := range []string{"want", "off by", "Error", "error", "fail", "timed out"} {
			if strings.Contains(m[1], k) {
				return strings.TrimSpace(l)
			}
		}
	}
	for _, k := range []string{"panic:", "--- FAIL"} {
		for _, l := range lines {
			if strings.Contains(l, k) {
				return strings.TrimSpace(l)
			}
		}
	}
	return firstLine(out)
}

// btfCheck hides the kernel's BTF behind an empty tmpfs and records with a
// copy of it passed by --btf FILE, or by EMBER_BTF=FILE (env).
func btfCheck(env bool) func(*guest, string) result {
	return func(g *guest, n string) result {
		const copyPath = "/tmp/vmlinux.btf"
		b, err := os.ReadFile("/sys/kernel/btf/vmlinux")
		if err != nil {
			return fail("read the kernel's BTF: %v", err)
		}
		if err := os.WriteFile(copyPath, b, 0o644); err != nil {
			return fail("%v", err)
		}
		if err := unix.Mount("tmpfs", "/sys/kernel/btf", "tmpfs", 0, ""); err != nil {
			return fail("hide /sys/kernel/btf: %v", err)
		}
		defer func() {
			if err := unix.Unmount("/sys/kernel/btf", 0); err != nil {
				g.logf(n, "unmount /sys/kernel/btf: %v", err)
			}
		}()
		if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err == nil {
			return fail("/sys/kernel/btf/vmlinux still visible under the tmpfs")
		}
		g.logf(n, "copied the kernel's BTF (%d bytes) to %s; /sys/kernel/btf hidden", len(b), copyPath)
		_, stop, err := g.background(n, guestTestdata+"/cpusplit", "120", "1")
		if err != nil {
			return fail("%v", err)
		}
		defer stop()
		if env {
			return g.record(n, []string{"EMBER_BTF=" + copyPath}, "cpu", "", "-d", "2s")
		}
		return g.record(n, nil, "cpu", "", "--btf", copyPath, "-d", "2s")
	}
}

// kernelProblem matches the kernel's reports of its own bugs: BUG: and
// WARNING: splats, Oopses.
var kernelProblem = regexp.MustCompile(`\bBUG\b|WARNING|Oops`)

// dmesg fails on any BUG, WARNING or Oops in the kernel log of the boot,
// and names the first.
func (g *guest) dmesg(check string) result {
	buf := make([]byte, 1<<22)
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		return fail("read the kernel log: %v", err)
	}
	log := string(buf[:n])
	var bad []string
	for _, l := range strings.Split(log, "\n") {
		if kernelProblem.MatchString(l) {
			bad = append(bad, l)
		}
	}
	g.logf(check, "%s", log)
	if len(bad) > 0 {
		return fail("%d lines: %s", len(bad), strings.Join(bad, " | "))
	}
	return pass("no BUG, WARNING or Oops in %d lines", strings.Count(log, "\n"))
}

// outputFiles lists the profiles an agent wrote.
func outputFiles(dir string) []string {
	var files []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	return files
}
