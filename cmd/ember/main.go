// Command ember is a continuous on-CPU and off-CPU profiler for Linux on eBPF.
//
// main only parses flags into configuration and hands it to the packages that
// do the work; each subcommand lives in its own file and registers itself on
// rootCmd from an init function.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

var rootCmd = &cobra.Command{
	Use:           "ember",
	Short:         "Continuous on-CPU and off-CPU profiler for Linux, on eBPF",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ember:", err)
		os.Exit(1)
	}
}
