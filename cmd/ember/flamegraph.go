package main

import (
	"errors"
	"os"

	"github.com/emberprof/ember/export/output"
	"github.com/spf13/cobra"
)

func init() {
	var out string
	var opts output.Options
	cmd := &cobra.Command{
		Use:   "flamegraph PROFILE -o OUT",
		Short: "Draw a profile as a flame graph (.html, .svg) or folded stacks (.folded, .txt)",
		Long: `Draw a pprof profile (from Ember, Go or any pprof producer) in the form OUT's
extension picks: .html (interactive, self-contained page), .svg (static, as
flamegraph.pl draws), .folded or .txt (folded stacks for flamegraph.pl,
inferno or speedscope; "-o -" writes them to standard output), or .pb.gz.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("flamegraph: -o OUT is required")
			}
			if out != "-" {
				if err := output.Supported(out); err != nil {
					return err
				}
			}
			p, err := output.ReadProfile(args[0])
			if err != nil {
				return err
			}
			if out == "-" {
				return output.Write(os.Stdout, output.Folded, p, opts)
			}
			return output.WriteFile(out, p, opts)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "output file; its extension picks the form (.html, .svg, .folded, .txt, .pb.gz)")
	f.StringVar(&opts.SampleType, "sample-type", "", `sample type to draw: "cpu", "offcpu", "wall", "cpu/nanoseconds" or an index (default: the profile's last)`)
	f.StringVar(&opts.Title, "title", "", "title of the flame graph")
	f.BoolVar(&opts.NoProcess, "no-process", false, "do not start stacks with the process name")
	f.StringVar(&opts.GroupBy, "group-by", "", `root stacks at their value of this label, e.g. "cause" (why off-CPU time was spent) or "thread"`)
	rootCmd.AddCommand(cmd)
}
