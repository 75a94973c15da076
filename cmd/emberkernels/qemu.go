package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// bootResult is what one boot of a kernel told the host.
type bootResult struct {
	uname    string
	checks   []checkResult
	done     bool // the guest said EMBER-DONE
	seconds  float64
	err      error  // qemu failed or timed out
	panicked string // the first kernel panic/Oops line on the console
}

// checkResult is one EMBER-CHECK line.
type checkResult struct {
	name, status, detail string
	seconds              float64
}

// qemuConfig is how guests are run.
type qemuConfig struct {
	accel   string // "tcg" or "kvm"
	cpu     string // qemu's -cpu model under TCG
	timeout time.Duration
	checks  string // ember.checks= for a subset, "" for all
}

// qemuArgs returns qemu's command line. Under TCG, thread=single: with
// multi-threaded TCG guests oopsed or hung once BPF programs attached, and
// on 2 host CPUs one thread loses little.
func (q qemuConfig) args(vmlinuz, initramfs, line, dataPath string) []string {
	accel := []string{"-accel", "tcg,thread=single", "-cpu", q.cpu}
	if q.accel == "kvm" {
		accel = []string{"-accel", "kvm", "-cpu", "host"}
	}
	appendLine := "console=ttyS0 panic=-1 quiet ember.line=" + line
	if q.checks != "" {
		appendLine += " ember.checks=" + q.checks
	}
	return append(accel,
		"-smp", "2", "-m", "2048",
		"-nographic", "-no-reboot",
		"-kernel", vmlinuz, "-initrd", initramfs,
		"-append", appendLine,
		// ttyS0: the console on stdout; ttyS1: the guest's report, a file.
		"-serial", "stdio", "-serial", "file:"+dataPath,
		"-monitor", "none",
		"-nic", "none",
	)
}

// boot runs one kernel with the checks and collects their results; the
// console and each check's log are kept under logDir. progress is called
// for each check as its line arrives.
func (q qemuConfig) boot(vmlinuz, initramfs, line, logDir string, progress func(checkResult)) bootResult {
	start := time.Now()
	res := bootResult{}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		res.err = fmt.Errorf("log dir: %w", err)
		return res
	}
	old, _ := filepath.Glob(filepath.Join(logDir, "*.log"))
	for _, f := range old {
		os.Remove(f)
	}
	dataPath := filepath.Join(logDir, "report.txt")
	os.Remove(dataPath)
	console, err := os.Create(filepath.Join(logDir, "console.log"))
	if err != nil {
		res.err = fmt.Errorf("console log: %w", err)
		return res
	}
	defer console.Close()

	ctx, cancel := context.WithTimeout(context.Background(), q.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", q.args(vmlinuz, initramfs, line, dataPath)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		res.err = fmt.Errorf("qemu: %w", err)
		return res
	}
	cmd.Stderr = console
	if err := cmd.Start(); err != nil {
		res.err = fmt.Errorf("start qemu: %w", err)
		return res
	}
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			fmt.Fprintln(console, l)
			if res.panicked == "" && !strings.HasPrefix(l, "emberkernels:") && (strings.Contains(l, "Kernel panic") || strings.Contains(l, "Oops") || strings.Contains(l, "BUG:")) {
				res.panicked = strings.TrimSpace(l)
			}
		}
	}()
	tail := &reportTail{path: dataPath, logDir: logDir, logs: map[string]*os.File{}}
	defer tail.closeLogs()
	waitErr := make(chan error, 1)
	go func() {
		<-consoleDone
		waitErr <- cmd.Wait()
	}()
	var qemuErr error
	for running := true; running; {
		select {
		case qemuErr = <-waitErr:
			running = false
		case <-time.After(300 * time.Millisecond):
		}
		tail.read(&res, progress)
	}
	res.seconds = time.Since(start).Seconds()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.err = fmt.Errorf("timed out after %s", q.timeout)
	case qemuErr != nil:
		res.err = fmt.Errorf("qemu: %w", qemuErr)
	case !res.done:
		res.err = errors.New("the guest stopped before reporting all checks (see console.log)")
	}
	return res
}

// reportTail reads the guest's report file as qemu appends to it.
type reportTail struct {
	path    string
	logDir  string
	off     int64
	partial string
	logs    map[string]*os.File
}

func (t *reportTail) read(res *bootResult, progress func(checkResult)) {
	f, err := os.Open(t.path)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := f.Seek(t.off, io.SeekStart); err != nil {
		return
	}
	b, _ := io.ReadAll(f)
	t.off += int64(len(b))
	text := t.partial + string(b)
	lines := strings.Split(text, "\n")
	t.partial = lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		t.line(strings.TrimRight(l, "\r"), res, progress)
	}
}

func (t *reportTail) line(l string, res *bootResult, progress func(checkResult)) {
	tag, rest, _ := strings.Cut(l, " ")
	switch tag {
	case tagInfo:
		if k, v, _ := strings.Cut(rest, " "); k == "uname" {
			res.uname = v
		}
	case tagLog:
		check, text, _ := strings.Cut(rest, " ")
		f := t.logs[check]
		if f == nil {
			var err error
			if f, err = os.Create(filepath.Join(t.logDir, check+".log")); err != nil {
				return
			}
			t.logs[check] = f
		}
		fmt.Fprintln(f, text)
	case tagCheck:
		f := strings.SplitN(rest, " ", 4)
		if len(f) < 4 {
			return
		}
		secs, _ := strconv.ParseFloat(f[2], 64)
		c := checkResult{name: f[0], status: f[1], seconds: secs, detail: f[3]}
		res.checks = append(res.checks, c)
		progress(c)
	case tagDone:
		res.done = true
	}
}

func (t *reportTail) closeLogs() {
	for _, f := range t.logs {
		f.Close()
	}
}

// kvmWorks boots a kernel under KVM with a guest that runs no check: KVM is
// used only if it really runs a stock kernel (a nested hypervisor such as
// kvm_pvm can offer /dev/kvm and still not).
func kvmWorks(vmlinuz, initramfs, logDir string) bool {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false
	}
	q := qemuConfig{accel: "kvm", timeout: 30 * time.Second, checks: "none"}
	r := q.boot(vmlinuz, initramfs, "probe", logDir, func(checkResult) {})
	return r.err == nil && r.done
}
