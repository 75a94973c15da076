// Command ember is a continuous on-CPU and off-CPU profiler for Linux on eBPF.
//
// main only parses flags into configuration and hands it to the packages that
// do the work; each subcommand lives in its own file and registers itself on
// rootCmd from an init function.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spf13/cobra"

	"github.com/emberprof/ember/internal/agent"
)

func init() {
	// The exec helper must exec from the main thread: an exec from another
	// thread makes the kernel retire the old thread-group leader, which
	// looks like the process exiting.
	if len(os.Args) > 1 && os.Args[1] == agent.ExecHelperArg {
		runtime.LockOSThread()
	}
}

var rootCmd = &cobra.Command{
	Use:           "ember",
	Short:         "Continuous on-CPU and off-CPU profiler for Linux, on eBPF",
	SilenceUsage:  true,
	SilenceErrors: true,
	PersistentPreRunE: func(*cobra.Command, []string) error {
		var l slog.Level
		if err := l.UnmarshalText([]byte(logLevel)); err != nil {
			return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
		}
		// One handler for every logger: the agent, its sinks and the
		// libraries all log through slog.Default().
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
		return nil
	},
}

// logLevel is the least severe level logged. Debug shows what is otherwise
// only counted: each process's maps read, each table that failed to build.
var logLevel string

func init() {
	rootCmd.PersistentFlags().StringVar(&logLevel, "log-level", "info", "least severe log level shown: debug, info, warn or error")
}

func main() {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
		agent.ProcessStart = time.Duration(ts.Nano())
	}
	// The agent's heap is mostly short-lived symbolization work: collecting at
	// 50% growth instead of 100% keeps its RSS about a third lower for a
	// little more GC time. record sets its own (200: one run that ends); GOGC
	// in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	if len(os.Args) > 1 && os.Args[1] == agent.ExecHelperArg {
		agent.RunExecHelper(os.Args[2:])
	}
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ember:", err)
		os.Exit(1)
	}
}
