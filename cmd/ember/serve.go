package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/emberprof/ember/export/output"
	"github.com/emberprof/ember/export/webui"
	"github.com/spf13/cobra"
)

func init() {
	var addr string
	cmd := &cobra.Command{
		Use:   "serve PROFILE",
		Short: "Serve a profile in pprof's web UI (flame graph, top, graph, source) on localhost",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := output.ReadProfile(args[0])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// pprof says where it serves ("Serving web UI on ...").
			return webui.Serve(ctx, p, webui.Options{Addr: addr, Log: os.Stderr})
		},
	}
	cmd.Flags().StringVar(&addr, "addr", webui.DefaultAddr, "host:port to listen on (port 0: any free port)")
	rootCmd.AddCommand(cmd)
}
