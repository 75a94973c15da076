package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/emberprof/ember/symbolize"
)

func init() {
	var (
		exe        string
		noDemangle bool
	)
	cmd := &cobra.Command{
		Use:   "symbolize --exe FILE < addresses",
		Short: "Print the frames of addresses in an ELF file, as llvm-symbolizer does",
		Long: `symbolize reads hexadecimal ELF virtual addresses (0x optional, one or more per line)
on standard input and prints, for each, its frames in llvm-symbolizer's default form:
the function, then file:line:column, inlined frames first, and a blank line.
Unknown parts print as ?? and ??:0:0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if exe == "" {
				return errors.New("--exe is required")
			}
			o, err := symbolize.OpenObject(exe)
			if err != nil {
				return err
			}
			defer o.Close()
			if err := o.Err(); err != nil {
				fmt.Fprintln(os.Stderr, "ember symbolize: warning:", err)
			}
			if err := symbolize.SymbolizeStream(os.Stdin, os.Stdout, o, !noDemangle); err != nil {
				fmt.Fprintln(os.Stderr, "ember symbolize:", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&exe, "exe", "", "ELF executable or shared library")
	cmd.Flags().BoolVar(&noDemangle, "no-demangle", false, "print function names as the binary gives them")
	rootCmd.AddCommand(cmd)
}
