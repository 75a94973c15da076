package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/export/pyroscope"
	"github.com/emberprof/ember/export/sink"
	"github.com/emberprof/ember/internal/agent"
	"github.com/emberprof/ember/internal/proc"
)

func init() {
	var (
		cfg      agent.Config
		mode     string
		pids     []int
		cgroup   string
		labels   []string
		services []string
		headers  []string
		metrics  string
		offState string

		pyro                          pyroscope.Config
		password, passwordFile, token string
		tokenFile                     string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Profile continuously and ship profiles to Pyroscope and/or rotating files",
		Long: `agent runs until SIGTERM or SIGINT. Every --interval it emits one CPU profile
(and, with --mode offcpu|wall, one off-CPU profile) per service to every sink:
--pyroscope-url (Grafana Pyroscope's push API) and/or --output-dir (rotating
files). On exit it delivers the last partial interval within --flush-timeout.

Credentials come from flags, files (--*-file) or the environment
(EMBER_PYROSCOPE_PASSWORD, EMBER_PYROSCOPE_TOKEN) and are never logged.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var err error
			if cfg.Mode, err = pprof.ParseMode(mode); err != nil {
				return err
			}
			if cfg.Tracer.OffCPUKinds, err = agent.ParseOffCPUState(offState); err != nil {
				return err
			}
			cfg.Tracer.PIDs = pids
			if cgroup != "" {
				if cfg.Tracer.CgroupID, err = proc.CgroupID(cgroup); err != nil {
					return err
				}
			}
			static, err := keyValues(labels, "--label")
			if err != nil {
				return err
			}
			if static["hostname"] == "" {
				static["hostname"], _ = os.Hostname()
			}
			if cfg.Services.Mapping, err = keyValues(services, "--service"); err != nil {
				return err
			}
			reg := agent.NewRegistry()
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			var sinks []sink.Sink
			if pyro.URL != "" {
				if pyro.Auth.BasicPassword, err = pyroscope.LoadSecret(password, passwordFile, "EMBER_PYROSCOPE_PASSWORD"); err != nil {
					return err
				}
				if pyro.Auth.BearerToken, err = pyroscope.LoadSecret(token, tokenFile, "EMBER_PYROSCOPE_TOKEN"); err != nil {
					return err
				}
				hv, err := keyValues(headers, "--header")
				if err != nil {
					return err
				}
				pyro.Auth.Headers = map[string]pyroscope.Secret{}
				for k, v := range hv {
					pyro.Auth.Headers[k] = pyroscope.Secret(v)
				}
				pyro.Labels, pyro.Registerer, pyro.Logger = static, reg, log
				s, err := pyroscope.New(pyro)
				if err != nil {
					return err
				}
				sinks = append(sinks, s)
			}
			if len(sinks) == 0 {
				return fmt.Errorf("no sink: give --pyroscope-url and/or --output-dir")
			}
			cfg.Sink = sink.Multi(sinks...)
			cfg.Logger = log
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := agent.Start(cfg)
			if err != nil {
				return err
			}
			if metrics != "" {
				if err := a.ServeMetrics(ctx, metrics, reg); err != nil {
					return err
				}
			}
			log.Info("ember agent started", "interval", cfg.Interval, "mode", cfg.Mode, "frequency", cfg.Tracer.Frequency, "sinks", len(sinks))
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&cfg.Interval, "interval", 15*time.Second, "emit profiles this often")
	f.IntVarP(&cfg.Tracer.Frequency, "frequency", "F", 19, "on-CPU samples per second per CPU")
	f.StringVar(&mode, "mode", "cpu", "cpu, offcpu or wall (CPU and off-CPU profiles)")
	f.StringVar(&offState, "offcpu-state", "all", "off-CPU states to keep: all, sleep, disk, runnable")
	f.DurationVar(&cfg.Tracer.OffCPUThreshold, "offcpu-threshold", time.Millisecond, "duration-weighted sampling threshold T")
	f.DurationVar(&cfg.Tracer.OffCPUMin, "offcpu-min", 0, "off-CPU blocks shorter than this are never kept")
	f.IntSliceVarP(&pids, "pid", "p", nil, "profile only these processes (default: the whole system)")
	f.StringVar(&cgroup, "cgroup", "", "profile only this cgroup v2")
	f.StringVar(&cfg.SplitBy, "split-by", "service", "one profile per service, or per pid")
	f.StringSliceVar(&services, "service", nil, "name=service: map an executable, comm or cgroup path prefix to a service (repeatable)")
	f.StringSliceVar(&labels, "label", nil, "k=v: a static label on every profile (repeatable)")
	f.DurationVar(&cfg.FlushTimeout, "flush-timeout", 10*time.Second, "deadline to deliver the last interval at exit")
	f.Int64Var(&cfg.SymbolCacheBytes, "symbol-cache-bytes", 256<<20, "byte budget of the symbolizer's cache")
	f.StringVar(&metrics, "metrics-addr", "", "serve Prometheus /metrics and /healthz here (e.g. localhost:9464)")

	f.StringVar(&pyro.URL, "pyroscope-url", "", "Pyroscope server to push to")
	f.StringVar(&pyro.Auth.BasicUser, "basic-auth-user", "", "basic auth user")
	f.StringVar(&password, "basic-auth-password", "", "basic auth password (or EMBER_PYROSCOPE_PASSWORD)")
	f.StringVar(&passwordFile, "basic-auth-password-file", "", "file holding the basic auth password")
	f.StringVar(&token, "bearer-token", "", "bearer token (or EMBER_PYROSCOPE_TOKEN)")
	f.StringVar(&tokenFile, "bearer-token-file", "", "file holding the bearer token")
	f.StringVar(&pyro.Auth.TenantID, "tenant-id", "", "tenant, sent as X-Scope-OrgID")
	f.StringSliceVar(&headers, "header", nil, "k=v: an extra request header (repeatable)")
	f.StringVar(&pyro.TLS.CAFile, "tls-ca-file", "", "PEM bundle of CAs to trust for the server")
	f.Int64Var(&pyro.QueueBytes, "queue-bytes", 64<<20, "byte budget of the upload queue; the oldest profile is dropped past it")
	rootCmd.AddCommand(cmd)
}

// keyValues parses repeated k=v flags.
func keyValues(kvs []string, flag string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want key=value", flag, kv)
		}
		out[k] = v
	}
	return out, nil
}
