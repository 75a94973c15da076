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

	"github.com/emberprof/ember/export/filesink"
	"github.com/emberprof/ember/export/otlp"
	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/export/pyroscope"
	"github.com/emberprof/ember/export/sink"
	"github.com/emberprof/ember/internal/agent"
	"github.com/emberprof/ember/internal/tracer"
)

func init() {
	var (
		cfg       agent.Config
		mode      string
		pids      []int
		cgroups   []string
		labels    []string
		services  []string
		metrics   string
		offState  string
		offMethod string
		dinfo     debuginfodFlags

		pyro        pyroscope.Flags
		otlpFlags   otlp.Flags
		selfProfile bool
		fileFlags   filesink.Flags
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Profile continuously and ship profiles to Pyroscope and/or rotating files",
		Long: `agent runs until SIGTERM or SIGINT. Every --interval it emits one CPU profile
(and, with --mode offcpu|wall, one off-CPU profile) per service to every sink:
--pyroscope-url (Grafana Pyroscope's push API), --otlp-endpoint (an OTLP
profiles receiver, v1development protocol) and/or --output-dir (rotating
files). On exit it delivers the last partial interval within --shutdown-timeout.

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
			if cfg.Tracer.OffCPUMethod, err = tracer.ParseOffCPUMethod(offMethod); err != nil {
				return err
			}
			cfg.Tracer.PIDs = pids
			if cfg.Tracer.Cgroups, err = cgroupDirs(cgroups); err != nil {
				return err
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
			var pcfg pyroscope.Config
			if pyro.URL != "" {
				if pcfg, err = pyro.Config(); err != nil {
					return err
				}
				pcfg.Labels, pcfg.Registerer, pcfg.Logger = static, reg, log
				s, err := pyroscope.New(pcfg)
				if err != nil {
					return err
				}
				sinks = append(sinks, s)
			}
			if otlpFlags.Endpoint != "" {
				ocfg, err := otlpFlags.Config()
				if err != nil {
					return err
				}
				ocfg.Labels, ocfg.Registerer, ocfg.Logger = static, reg, log
				s, err := otlp.NewSink(ocfg)
				if err != nil {
					return err
				}
				sinks = append(sinks, s)
			}
			if fileFlags.Dir != "" {
				files := fileFlags.Config()
				files.Labels, files.Registerer, files.Logger = static, reg, log
				s, err := filesink.New(files)
				if err != nil {
					return err
				}
				sinks = append(sinks, s)
			}
			if len(sinks) == 0 {
				return fmt.Errorf("no sink: give --pyroscope-url, --otlp-endpoint and/or --output-dir")
			}
			cfg.Sink = sink.Multi(sinks...)
			cfg.Logger = log
			if cfg.Debuginfod, err = dinfo.client(log, reg); err != nil {
				return err
			}
			if cfg.Debuginfod != nil {
				defer cfg.Debuginfod.Close()
			}
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
			if selfProfile {
				if pyro.URL == "" {
					return fmt.Errorf("--self-profile needs --pyroscope-url")
				}
				sp, err := pyroscope.StartSelfProfile(pyroscope.SelfProfileConfig{URL: pcfg.URL, Auth: pcfg.Auth, TLS: pcfg.TLS, Labels: static, Logger: log})
				if err != nil {
					return err
				}
				defer sp.Stop(context.Background())
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
	f.StringVar(&offMethod, "offcpu-method", "auto", offCPUMethodUsage)
	f.DurationVar(&cfg.Tracer.OffCPUThreshold, "offcpu-threshold", DefaultOffCPUThreshold, "duration-weighted sampling threshold T")
	f.DurationVar(&cfg.Tracer.OffCPUMin, "offcpu-min", 0, "off-CPU blocks shorter than this are never kept")
	f.IntSliceVarP(&pids, "pid", "p", nil, "profile only these processes (default: the whole system)")
	f.StringArrayVar(&cgroups, "cgroup", nil, cgroupUsage)
	f.StringVar(&cfg.Tracer.KernelBTF, "btf", os.Getenv("EMBER_BTF"), btfUsage)
	dinfo.add(f)
	f.BoolVar(&cfg.Tracer.Wakers, "wakers", false, wakersUsage)
	f.StringVar(&cfg.SplitBy, "split-by", "service", "one profile per service, or per pid")
	f.StringSliceVar(&services, "service", nil, "name=service: map an executable, comm or cgroup path prefix to a service (repeatable)")
	f.StringSliceVar(&labels, "label", nil, "k=v: a static label on every profile (repeatable)")
	f.DurationVar(&cfg.FlushTimeout, "shutdown-timeout", 10*time.Second, "deadline to deliver the last interval at exit")
	f.Int64Var(&cfg.SymbolCacheBytes, "symbol-cache-bytes", 256<<20, "byte budget of the symbolizer's cache")
	f.StringVar(&metrics, "metrics-addr", "", "serve Prometheus /metrics and /healthz here (e.g. localhost:9464)")

	pyro.Register(f)
	otlpFlags.Register(f)
	f.BoolVar(&selfProfile, "self-profile", false, "send Ember's own Go profiles to the same Pyroscope")
	fileFlags.Register(f)
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
