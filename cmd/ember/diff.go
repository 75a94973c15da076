package main

import (
	"errors"

	"github.com/emberprof/ember/export/output"
	"github.com/spf13/cobra"
)

func init() {
	var out string
	var opts output.DiffOptions
	cmd := &cobra.Command{
		Use:   "diff BASE NEW -o OUT",
		Short: "Draw a differential flame graph: red where NEW spends more than BASE, blue where less",
		Long: `Compare two pprof profiles. Widths follow NEW; frames are red where NEW spends
more than BASE, blue where less. BASE is scaled to NEW's total first (so the
colours show where time moved) unless --no-normalize. OUT's extension picks the
form: .html, .svg, .folded/.txt ("stack base new", as difffolded.pl writes) or
.pb.gz (a pprof profile with BASE negated, as pprof -diff_base builds).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("diff: -o OUT is required")
			}
			if err := output.Supported(out); err != nil {
				return err
			}
			base, err := output.ReadProfile(args[0])
			if err != nil {
				return err
			}
			newer, err := output.ReadProfile(args[1])
			if err != nil {
				return err
			}
			return output.WriteDiffFile(out, base, newer, opts)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "output file; its extension picks the form (.html, .svg, .folded, .txt, .pb.gz)")
	f.StringVar(&opts.SampleType, "sample-type", "", "sample type to compare (default: NEW's last)")
	f.StringVar(&opts.Title, "title", "", "title of the flame graph")
	f.BoolVar(&opts.NoProcess, "no-process", false, "do not start stacks with the process name")
	f.BoolVar(&opts.NoNormalize, "no-normalize", false, "compare raw values instead of scaling BASE to NEW's total")
	rootCmd.AddCommand(cmd)
}
