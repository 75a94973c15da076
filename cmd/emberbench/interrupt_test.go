package main

import (
	"bufio"
	"os/exec"
	"testing"
	"time"
)

// startShell starts sh running script and waits until it says "ready", so
// that its traps are set before it is signalled.
func startShell(t *testing.T, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if l, err := bufio.NewReader(out).ReadString('\n'); err != nil || l != "ready\n" {
		t.Fatalf("shell said %q, %v", l, err)
	}
	return cmd
}

// A profiler that misses the first SIGINT (as bpftrace has) exits at the
// next one; one that ignores them all is killed at the limit.
func TestInterruptResendsThenKills(t *testing.T) {
	second := startShell(t, `n=0; trap 'n=$((n+1)); [ $n -ge 2 ] && exit 0' INT; echo ready; while :; do sleep 0.05; done`)
	killed, err := interrupt(second, 200*time.Millisecond, 10*time.Second)
	if killed || err != nil {
		t.Errorf("exits at its second SIGINT: killed %v, err %v", killed, err)
	}

	deaf := startShell(t, `trap '' INT; echo ready; while :; do sleep 0.05; done`)
	killed, err = interrupt(deaf, 200*time.Millisecond, time.Second)
	if !killed || err != nil {
		t.Errorf("ignores SIGINT: killed %v, err %v; want killed at the limit", killed, err)
	}
}
