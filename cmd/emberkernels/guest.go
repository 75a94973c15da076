package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Paths inside the guest's initramfs (see initramfs.go).
const (
	guestEmber     = "/bin/ember"
	guestEmberTest = "/bin/ember.test"
	guestPprof     = "/bin/pprof"
	guestTestdata  = "/opt/ember/testdata"
)

// The guest speaks to the host in lines on its second serial port (ttyS1,
// a file on the host), away from the kernel's console messages, which can
// land in the middle of a line on ttyS0:
//
//	EMBER-INFO <key> <value>
//	EMBER-LOG <check> <line of the check's log>
//	EMBER-CHECK <check> <pass|fail|unsupported|skip> <seconds> <one-line detail>
//	EMBER-DONE
const (
	tagInfo  = "EMBER-INFO"
	tagLog   = "EMBER-LOG"
	tagCheck = "EMBER-CHECK"
	tagDone  = "EMBER-DONE"
)

// guest is the state of the init process inside a qemu guest.
type guest struct {
	line   string // kernel line, from ember.line= on the command line
	only   map[string]bool
	mu     sync.Mutex
	out    io.Writer // the host channel
	stdout io.Writer // the console, for a human watching the boot
}

// guestMain is /init: it mounts what Ember needs, runs the checks, reports
// them to the host and powers the machine off. It never returns; should it
// panic the kernel panics too (init died), and panic=-1 with qemu's
// -no-reboot ends qemu either way.
func guestMain() {
	g := &guest{out: os.Stdout, stdout: os.Stdout}
	defer g.powerOff()
	if err := mountAll(); err != nil {
		fmt.Fprintf(os.Stdout, "emberkernels: %v\n", err)
	}
	if f, err := os.OpenFile("/dev/ttyS1", os.O_WRONLY, 0); err == nil {
		g.out = f
	} else {
		fmt.Fprintf(os.Stdout, "emberkernels: no ttyS1 (%v): reporting on the console\n", err)
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(cmdline)) {
		if v, ok := strings.CutPrefix(f, "ember.line="); ok {
			g.line = v
		}
		if v, ok := strings.CutPrefix(f, "ember.checks="); ok {
			g.only = map[string]bool{}
			for _, c := range strings.Split(v, ",") {
				g.only[c] = true
			}
		}
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	g.emit(tagInfo, "uname", unix.ByteSliceToString(uts.Release[:])+" "+unix.ByteSliceToString(uts.Version[:]))
	os.Setenv("PATH", "/bin")
	os.Setenv("HOME", "/tmp")
	os.Setenv("TMPDIR", "/tmp")
	for _, c := range guestChecks {
		if g.only != nil && !g.only[c.name] {
			continue
		}
		g.runCheck(c)
	}
	g.emit(tagDone)
}

// mountAll mounts the file systems a booted system has and Ember expects:
// /proc and /sys for everything, devtmpfs for the serial ports, a tmpfs
// /tmp for outputs, bpffs, cgroup2 for cgroup labels. Not tracefs or
// debugfs: Ember attaches without them, and the matrix proves it.
func mountAll() error {
	var errs []error
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
		{"bpffs", "/sys/fs/bpf", "bpf"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err))
		}
	}
	return errors.Join(errs...)
}

func (g *guest) powerOff() {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stdout, "emberkernels: panic: %v\n", r)
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {} // the kernel stops the machine; init must not exit before it does
}

func (g *guest) emit(fields ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fmt.Fprintln(g.out, strings.Join(fields, " "))
}

// logf adds a line (or several) to a check's log on the host.
func (g *guest) logf(check, format string, args ...any) {
	for _, l := range strings.Split(strings.TrimRight(fmt.Sprintf(format, args...), "\n"), "\n") {
		g.emit(tagLog, check, l)
	}
}

// result is a check's outcome as the guest sees it: "unsupported" is a
// refusal in one line; whether that is right is for the host's table.
type result struct {
	status string // pass, fail, unsupported, skip
	detail string
}

func pass(format string, args ...any) result { return result{"pass", fmt.Sprintf(format, args...)} }
func fail(format string, args ...any) result { return result{"fail", fmt.Sprintf(format, args...)} }

func (g *guest) runCheck(c guestCheck) {
	start := time.Now()
	fmt.Fprintf(g.stdout, "emberkernels: check %s\n", c.name)
	var r result
	func() {
		defer func() {
			if p := recover(); p != nil {
				r = fail("panic: %v", p)
			}
		}()
		r = c.run(g, c.name)
	}()
	secs := time.Since(start).Seconds()
	detail := oneLine(r.detail)
	if detail == "" {
		detail = "-"
	}
	g.emit(tagCheck, c.name, r.status, fmt.Sprintf("%.1f", secs), detail)
	fmt.Fprintf(g.stdout, "emberkernels: %s %s %.1fs %s\n", c.name, r.status, secs, detail)
}

// oneLine makes s fit a table cell: its first line, at most 200 bytes.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:197] + "..."
	}
	return s
}

// cmdResult is what running one command gave.
type cmdResult struct {
	err      error
	exit     int
	stdout   string
	stderr   string
	timedOut bool
}

// run runs a command with a deadline, with its output logged under check.
func (g *guest) run(check string, timeout time.Duration, env []string, name string, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = "/tmp"
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	g.logf(check, "$ %s %s %s", strings.Join(env, " "), name, strings.Join(args, " "))
	start := time.Now()
	err := cmd.Run()
	r := cmdResult{err: err, stdout: stdout.String(), stderr: stderr.String(), timedOut: ctx.Err() != nil}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.exit = ee.ExitCode()
	} else if err != nil {
		r.exit = -1
	}
	if r.stdout != "" {
		g.logf(check, "[stdout]\n%s", r.stdout)
	}
	if r.stderr != "" {
		g.logf(check, "[stderr]\n%s", r.stderr)
	}
	g.logf(check, "[exit %d after %.1fs: %v]", r.exit, time.Since(start).Seconds(), err)
	return r
}

// background starts a workload for checks that need something to profile,
// and returns a function that stops it.
func (g *guest) background(check string, name string, args ...string) (*exec.Cmd, func(), error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = "/tmp"
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", name, err)
	}
	g.logf(check, "started %s %s (pid %d)", name, strings.Join(args, " "), cmd.Process.Pid)
	return cmd, func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}, nil
}

var (
	samplesRe = regexp.MustCompile(`ember: (\d+) samples from`)
	blocksRe  = regexp.MustCompile(`off-CPU: (\d+) blocks`)
	methodRe  = regexp.MustCompile(`\(method ([a-z-]+)`)
)

// summary is what record's end-of-run summary on stderr says.
type summary struct {
	samples, blocks int64
	method          string
}

func parseSummary(stderr string) summary {
	var s summary
	if m := samplesRe.FindStringSubmatch(stderr); m != nil {
		fmt.Sscan(m[1], &s.samples)
	}
	if m := blocksRe.FindStringSubmatch(stderr); m != nil {
		fmt.Sscan(m[1], &s.blocks)
	}
	if m := methodRe.FindStringSubmatch(stderr); m != nil {
		s.method = m[1]
	}
	return s
}

// refusal classifies a failed ember run: a refusal in one line of stderr is
// "unsupported" (the host decides whether the kernel should have supported
// it), anything longer (a verifier dump, a panic) or a timeout is a failure.
func refusal(r cmdResult) result {
	if r.timedOut {
		return fail("timed out: %s", firstLine(r.stderr))
	}
	var lines []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	switch {
	case len(lines) == 0:
		return fail("exit %d with no message (%v)", r.exit, r.err)
	case len(lines) == 1:
		return result{"unsupported", lines[0]}
	}
	return fail("%s (+%d more lines of error)", firstLine(r.stderr), len(lines)-1)
}

// firstLine is the first meaningful line of an error output: the first that
// says "ember:" or "error", else the first non-empty one.
func firstLine(s string) string {
	var first string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if first == "" {
			first = l
		}
		if strings.HasPrefix(l, "ember:") || strings.Contains(strings.ToLower(l), "error") {
			return l
		}
	}
	return first
}
