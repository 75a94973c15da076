package pyroscope

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"time"

	pyroscopego "github.com/grafana/pyroscope-go"
)

// SelfProfileConfig says where to send the profiler's own Go profiles.
type SelfProfileConfig struct {
	// URL, Auth and TLS are as in Config (and usually the same).
	URL  string
	Auth Auth
	TLS  TLS
	// Service is the service_name to file the profiles under; "ember" if
	// empty.
	Service string
	// Labels are added to every profile (hostname, the --label flags).
	Labels map[string]string
	// UploadRate is how often profiles are sent; 15s if zero.
	UploadRate time.Duration
	// Logger receives pyroscope-go's messages; nil discards them.
	Logger *slog.Logger
}

// SelfProfiler sends the process's own CPU and memory profiles to Pyroscope.
type SelfProfiler struct {
	p *pyroscopego.Profiler
}

// StartSelfProfile starts sending the process's Go profiles (CPU, allocated
// and in-use memory) with github.com/grafana/pyroscope-go. Only one CPU
// profile can run in a process, so this excludes any other runtime/pprof CPU
// profiling.
func StartSelfProfile(cfg SelfProfileConfig) (*SelfProfiler, error) {
	c, err := Config{URL: cfg.URL, Auth: cfg.Auth, TLS: cfg.TLS, Labels: cfg.Labels}.withDefaults()
	if err != nil {
		return nil, err
	}
	client := *c.HTTPClient
	client.Timeout = DefaultTimeout // pyroscope-go sets none on a client it is given
	headers := make(map[string]string, len(c.Auth.Headers)+1)
	for k, v := range c.Auth.Headers {
		headers[k] = v.Value()
	}
	if c.Auth.BearerToken != "" {
		headers["Authorization"] = "Bearer " + c.Auth.BearerToken.Value()
	}
	service := cfg.Service
	if service == "" {
		service = "ember"
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p, err := pyroscopego.Start(pyroscopego.Config{
		ApplicationName:   service,
		Tags:              maps.Clone(cfg.Labels),
		ServerAddress:     c.URL,
		BasicAuthUser:     c.Auth.BasicUser,
		BasicAuthPassword: c.Auth.BasicPassword.Value(),
		TenantID:          c.Auth.TenantID,
		HTTPHeaders:       headers,
		HTTPClient:        &client,
		UploadRate:        cfg.UploadRate,
		Logger:            slogAdapter{logger},
		ProfileTypes: []pyroscopego.ProfileType{
			pyroscopego.ProfileCPU,
			pyroscopego.ProfileAllocObjects, pyroscopego.ProfileAllocSpace,
			pyroscopego.ProfileInuseObjects, pyroscopego.ProfileInuseSpace,
			pyroscopego.ProfileGoroutines,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("pyroscope: self-profiling: %w", err)
	}
	return &SelfProfiler{p: p}, nil
}

// Stop sends what was profiled since the last upload, waiting for it until
// ctx is done, and stops profiling.
func (s *SelfProfiler) Stop(ctx context.Context) error {
	flushed := make(chan struct{})
	go func() {
		s.p.Flush(true)
		close(flushed)
	}()
	var err error
	select {
	case <-flushed:
	case <-ctx.Done():
		err = fmt.Errorf("pyroscope: self-profiling: last upload: %w", context.Cause(ctx))
	}
	_ = s.p.Stop()
	return err
}

// slogAdapter passes pyroscope-go's printf-style messages to slog, at one
// level lower than pyroscope-go names them: its "info" is start-up detail.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Infof(f string, args ...any) {
	a.l.Debug("pyroscope-go: " + fmt.Sprintf(f, args...))
}
func (a slogAdapter) Debugf(f string, args ...any) {
	a.l.Debug("pyroscope-go: " + fmt.Sprintf(f, args...))
}
func (a slogAdapter) Errorf(f string, args ...any) {
	a.l.Warn("pyroscope-go: " + fmt.Sprintf(f, args...))
}
