package otlp

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/pflag"

	"github.com/emberprof/ember/export/pyroscope"
)

// Flags are the --otlp-* flags of the agent's command.
type Flags struct {
	Endpoint         string
	Protocol         string
	Headers          []string
	CAFile           string
	QueueBytes       int64
	DropSampleLabels []string
}

// Register adds the --otlp-* flags to fs.
func (f *Flags) Register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Endpoint, "otlp-endpoint", "", "export profiles to this OTLP receiver (v1development protocol), http://host:port or https://host:port")
	fs.StringVar(&f.Protocol, "otlp-protocol", ProtocolGRPC, "OTLP transport: "+ProtocolGRPC+" or "+ProtocolHTTP+" (POST to "+HTTPPath+" unless the endpoint has a path)")
	fs.StringArrayVar(&f.Headers, "otlp-header", nil, "extra request header (gRPC metadata) Name=Value, e.g. X-Scope-OrgID=tenant (repeatable)")
	fs.StringVar(&f.CAFile, "otlp-ca-file", "", "PEM file of the authorities to trust for an https endpoint")
	fs.Int64Var(&f.QueueBytes, "otlp-queue-bytes", pyroscope.DefaultQueueBytes, "byte budget of the OTLP upload queue; the oldest profiles are dropped beyond it")
	fs.StringSliceVar(&f.DropSampleLabels, "otlp-drop-sample-labels", []string{"tid", "thread"},
		"sample labels not exported (Pyroscope makes a series of each distinct set)")
}

// Config checks the flags and returns the sink configuration they describe.
// The caller sets Labels, Registerer and Logger.
func (f *Flags) Config() (SinkConfig, error) {
	u, err := url.Parse(f.Endpoint)
	if err != nil {
		return SinkConfig{}, fmt.Errorf("--otlp-endpoint: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return SinkConfig{}, fmt.Errorf("--otlp-endpoint %q: want http://host:port or https://host:port", u.Redacted())
	}
	switch f.Protocol {
	case ProtocolGRPC:
		if u.Path != "" && u.Path != "/" {
			return SinkConfig{}, fmt.Errorf("--otlp-endpoint %q: a gRPC endpoint has no path", u.Redacted())
		}
	case ProtocolHTTP:
	default:
		return SinkConfig{}, fmt.Errorf("--otlp-protocol %q: want %s or %s", f.Protocol, ProtocolGRPC, ProtocolHTTP)
	}
	if f.CAFile != "" && u.Scheme != "https" {
		return SinkConfig{}, fmt.Errorf("--otlp-ca-file is for an https endpoint, not %s", u.Scheme)
	}
	if f.QueueBytes <= 0 {
		return SinkConfig{}, fmt.Errorf("--otlp-queue-bytes %d: want a positive budget", f.QueueBytes)
	}
	headers := map[string]pyroscope.Secret{}
	for _, h := range f.Headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return SinkConfig{}, fmt.Errorf("--otlp-header %q: want Name=Value", k)
		}
		headers[k] = pyroscope.Secret(v)
	}
	return SinkConfig{
		Config: pyroscope.Config{
			URL:              f.Endpoint,
			Auth:             pyroscope.Auth{Headers: headers},
			TLS:              pyroscope.TLS{CAFile: f.CAFile},
			QueueBytes:       f.QueueBytes,
			DropSampleLabels: f.DropSampleLabels,
		},
		Protocol: f.Protocol,
	}, nil
}
