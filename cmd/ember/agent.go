package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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
		memLimit  string
		offState  string
		offMethod string
		dinfo     debuginfodFlags

		pyro        pyroscopeFlags
		otlpFlags   otlpFlags
		selfProfile bool
		fileFlags   fileSinkFlags
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
			if err := checkAgentFlags(c.Flags(), &cfg, metrics); err != nil {
				return err
			}
			if cfg.Memory, err = memoryBudget(memLimit); err != nil {
				return err
			}
			if !c.Flags().Changed("symbol-cache-bytes") {
				cfg.SymbolCacheBytes = cfg.Memory.SymbolCache
			}
			if !c.Flags().Changed("pyroscope-queue-bytes") {
				pyro.QueueBytes = cfg.Memory.QueueBytes
			}
			if !c.Flags().Changed("otlp-queue-bytes") {
				otlpFlags.QueueBytes = cfg.Memory.QueueBytes
			}
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
			if cfg.Services.Mapping, err = agent.ParseServiceRules(services); err != nil {
				return err
			}
			reg := agent.NewRegistry()
			log := slog.Default() // --log-level's handler
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
			log.Info("ember agent started", "interval", cfg.Interval, "mode", cfg.Mode, "frequency", cfg.Tracer.Frequency, "sinks", len(sinks),
				"memory_limit", cfg.Memory.Limit, "go_memory_limit", a.GoMemoryLimit())
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
	f.StringVar(&cfg.SplitBy, "split-by", "service", "one profile per service, or per pid: service or pid")
	f.StringSliceVar(&services, "service", nil, "name=service: map an executable, comm or cgroup path prefix to a service (repeatable)")
	f.StringSliceVar(&labels, "label", nil, "k=v: a static label on every profile (repeatable)")
	f.DurationVar(&cfg.FlushTimeout, "shutdown-timeout", 10*time.Second, "deadline to deliver the last interval at exit")
	f.Int64Var(&cfg.SymbolCacheBytes, "symbol-cache-bytes", 0, "byte budget of the symbolizer's cache (default: an eighth of --memory-limit)")
	f.StringVar(&memLimit, "memory-limit", "128MiB", "memory budget of the agent: Go heap, binaries read, caches, queues and BPF maps together (e.g. 64MiB; at least 48MiB)")
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

// checkAgentFlags refuses, before anything is loaded, the values of the
// agent's flags that no later step would question.
func checkAgentFlags(f *pflag.FlagSet, cfg *agent.Config, metricsAddr string) error {
	switch {
	case cfg.Interval < time.Second:
		return fmt.Errorf("--interval %v: want at least 1s (the kernel maps are drained every second)", cfg.Interval)
	case cfg.Interval > time.Hour:
		return fmt.Errorf("--interval %v: want at most 1h (Pyroscope rejects data older than an hour)", cfg.Interval)
	case cfg.Tracer.Frequency < 1 || cfg.Tracer.Frequency > 1000:
		return fmt.Errorf("--frequency %d: want 1 to 1000 Hz", cfg.Tracer.Frequency)
	case cfg.SplitBy != "service" && cfg.SplitBy != "pid":
		return fmt.Errorf("--split-by %q: want service or pid", cfg.SplitBy)
	case cfg.FlushTimeout <= 0:
		return fmt.Errorf("--shutdown-timeout %v: want a positive duration", cfg.FlushTimeout)
	case cfg.Tracer.OffCPUThreshold < 0 || cfg.Tracer.OffCPUMin < 0:
		return fmt.Errorf("--offcpu-threshold and --offcpu-min: want durations of 0 or more")
	case f.Changed("symbol-cache-bytes") && cfg.SymbolCacheBytes <= 0:
		return fmt.Errorf("--symbol-cache-bytes %d: want a positive budget", cfg.SymbolCacheBytes)
	}
	if metricsAddr != "" {
		if _, _, err := net.SplitHostPort(metricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr %q: want host:port: %w", metricsAddr, err)
		}
	}
	return nil
}

// memoryBudget parses --memory-limit (bytes, or with a KiB, MiB, GiB (or K,
// M, G) suffix) and divides it.
func memoryBudget(s string) (agent.Budget, error) {
	n, err := parseBytes(s)
	if err != nil {
		return agent.Budget{}, fmt.Errorf("--memory-limit %q: %w", s, err)
	}
	return agent.PlanMemory(n)
}

func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("want a positive size such as 134217728, 128MiB or 1GiB")
	}
	return n * mult, nil
}
