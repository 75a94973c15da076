package agent

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// ExecHelperArg is the hidden first argument with which Ember re-executes
// itself to launch a command: the helper waits until the tracer has put its
// PID into the kernel filter, then execs the command in place (same PID), so
// that not one instruction of the command runs unprofiled.
const ExecHelperArg = "__ember_exec"

// RunExecHelper is the helper's body; it never returns. fd 3 is the pipe the
// parent writes one byte to when profiling has started.
func RunExecHelper(args []string) {
	if len(args) == 0 {
		os.Exit(127)
	}
	go_ := os.NewFile(3, "ember-go")
	var b [1]byte
	if n, _ := go_.Read(b[:]); n != 1 {
		os.Exit(127) // the parent gave up
	}
	go_.Close()
	path, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "ember:", err)
		os.Exit(127)
	}
	err = syscall.Exec(path, args, os.Environ())
	fmt.Fprintf(os.Stderr, "ember: exec %s: %v\n", args[0], err)
	os.Exit(127)
}

// launched is a command started through the exec helper, held at the start.
type launched struct {
	cmd *exec.Cmd
	go_ *os.File
}

// startHeld starts args held before exec; release lets it run.
func startHeld(args []string) (*launched, error) {
	if _, err := exec.LookPath(args[0]); err != nil {
		return nil, fmt.Errorf("command %q: %w", args[0], err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{ExecHelperArg}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{r}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start %q: %w", args[0], err)
	}
	r.Close()
	return &launched{cmd: cmd, go_: w}, nil
}

func (l *launched) pid() int { return l.cmd.Process.Pid }

func (l *launched) release() error {
	_, err := l.go_.Write([]byte{1})
	l.go_.Close()
	return err
}

// abort ends a held command that will never be released.
func (l *launched) abort() {
	l.go_.Close()
	_ = l.cmd.Wait()
}
