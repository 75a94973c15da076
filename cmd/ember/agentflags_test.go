package main

import (
	"errors"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/internal/testutil/pyroscopetest"
)

// Every agent flag is checked before anything is loaded: a bad value exits 1
// at once with one line naming the flag.
func TestAgentFlagsChecked(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"--split-by host", "--split-by"},
		{"--service java", "--service"},
		{"--service a/b=svc", "--service"},
		{"--service java=a --service java=b", "given twice"},
		{"--memory-limit 16MiB", "--memory-limit"},
		{"--memory-limit lots", "--memory-limit"},
		{"--interval 100ms", "--interval"},
		{"--frequency 0", "--frequency"},
		{"--shutdown-timeout 0s", "--shutdown-timeout"},
		{"--metrics-addr nowhere", "--metrics-addr"},
		{"--log-level loud", "--log-level"},
		{"--symbol-cache-bytes -1", "--symbol-cache-bytes"},
	} {
		start := time.Now()
		out, err := exec.Command(emberBin(t), append([]string{"agent", "--output-dir", t.TempDir()}, strings.Fields(c.args)...)...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), c.want) || strings.Count(strings.TrimSpace(string(out)), "\n") > 0 {
			t.Errorf("agent %s: %v, %q; want exit 1 and one line naming %s", c.args, err, out, c.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Logf("agent %s took %v to refuse", c.args, d)
		}
	}
}

// --log-level reaches the agent's own logs: at warn its info lines are
// gone, at debug its debug lines (the memory budget) appear.
func TestAgentLogLevel(t *testing.T) {
	testutil.RequireRoot(t)
	for _, level := range []string{"warn", "debug"} {
		agent, stderr := startAgent(t, "--output-dir", t.TempDir(), "--interval", "1s", "--pid", "1", "--log-level", level)
		time.Sleep(4 * time.Second)
		agent.Process.Signal(syscall.SIGTERM)
		if err := agent.Wait(); err != nil {
			t.Fatalf("--log-level %s: exit %v\n%s", level, err, stderr.String())
		}
		info := strings.Contains(stderr.String(), `level=INFO msg="ember agent started"`)
		debug := strings.Contains(stderr.String(), `level=DEBUG msg="memory budget"`)
		if level == "warn" && (info || debug) || level == "debug" && (!info || !debug) {
			t.Errorf("--log-level %s: info line %v, debug line %v:\n%.3000s", level, info, debug, stderr.String())
		}
	}
}

// SIGTERM while the server hangs: the agent gives up at --shutdown-timeout,
// exits 1 and names what it did not deliver (kind, service, how many).
func TestAgentSIGTERMSaysWhatWasDropped(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := buildCPUSplit(t, dir)
	w := exec.Command(bin, "30")
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { w.Process.Kill(); w.Wait() }()
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	defer srv.Close()
	srv.Hang()
	defer srv.Release()
	agent, stderr := startAgent(t, "--pyroscope-url", srv.URL, "--interval", "2s", "--pid", strconv.Itoa(w.Process.Pid), "--shutdown-timeout", "3s")
	time.Sleep(7 * time.Second)
	sent := time.Now()
	agent.Process.Signal(syscall.SIGTERM)
	err := agent.Wait()
	took := time.Since(sent)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("agent exit %v after SIGTERM with a hung server, want 1\n%s", err, stderr.String())
	}
	m := regexp.MustCompile(`pyroscope: (\d+) profiles \(\d+ bytes\) not delivered \(process_cpu cpusplit x(\d+), from \S+ to \S+\)`).FindStringSubmatch(stderr.String())
	if m == nil || m[1] != m[2] || m[1] == "0" {
		t.Errorf("the agent does not say what it dropped:\n%s", stderr.String())
	}
	t.Logf("exited %v after SIGTERM: %s", took.Round(time.Millisecond), m[0])
	if took > 10*time.Second {
		t.Errorf("SIGTERM took %v with --shutdown-timeout 3s", took)
	}
}
