package main

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/emberprof/ember/symbolize/debuginfod"
)

// debuginfodFlags are the flags of record and agent that enable fetching
// debug files by build ID.
type debuginfodFlags struct {
	urls string
}

const debuginfodURLUsage = "debuginfod servers to fetch missing debug files from, space-separated (default $DEBUGINFOD_URLS; off when empty); cached as elfutils' client caches ($DEBUGINFOD_CACHE_PATH or ~/.cache/debuginfod_client)"

func (d *debuginfodFlags) add(f *pflag.FlagSet) {
	f.StringVar(&d.urls, "debuginfod-url", "", debuginfodURLUsage)
}

// client returns a debuginfod client for the flags or the environment, or
// nil when neither names a server.
func (d *debuginfodFlags) client(log *slog.Logger, reg prometheus.Registerer) (*debuginfod.Client, error) {
	urls := debuginfod.ParseURLs(d.urls)
	if len(urls) == 0 {
		urls = debuginfod.URLsFromEnv()
	}
	if len(urls) == 0 {
		return nil, nil
	}
	return debuginfod.New(debuginfod.Config{URLs: urls, Logger: log, Registerer: reg})
}
