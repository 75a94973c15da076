package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/emberprof/ember/export/filesink"
	"github.com/emberprof/ember/export/otlp"
	"github.com/emberprof/ember/export/pyroscope"
)

// The flags of the agent's sinks live here, in the command: the export
// packages take plain configuration structs.

// pyroscopeFlags are the --pyroscope-* flags of `ember agent`: they
// configure a pyroscope.Sink. Credentials come from a flag, a file (the -file
// flags) or the environment, in that order; a flag shows in the process
// list, so prefer a file or the environment.
type pyroscopeFlags struct {
	URL                       string
	BasicUser                 string
	BasicPassword, PassFile   string
	BearerToken, TokenFile    string
	TenantID                  string
	Headers                   []string
	CAFile, CertFile, KeyFile string
	ServerName                string
	QueueBytes                int64
	DropSampleLabels          []string
}

// Register adds the --pyroscope-* flags to fs.
func (f *pyroscopeFlags) Register(fs *pflag.FlagSet) {
	fs.StringVar(&f.URL, "pyroscope-url", "", "send profiles to the Pyroscope server at this URL")
	fs.StringVar(&f.BasicUser, "pyroscope-basic-auth-user", "", "basic auth user")
	fs.StringVar(&f.BasicPassword, "pyroscope-basic-auth-password", "", "basic auth password (visible in ps; prefer the file or $"+pyroscope.EnvBasicPassword+")")
	fs.StringVar(&f.PassFile, "pyroscope-basic-auth-password-file", "", "read the basic auth password from this file")
	fs.StringVar(&f.BearerToken, "pyroscope-bearer-token", "", "bearer token (visible in ps; prefer the file or $"+pyroscope.EnvBearerToken+")")
	fs.StringVar(&f.TokenFile, "pyroscope-bearer-token-file", "", "read the bearer token from this file")
	fs.StringVar(&f.TenantID, "pyroscope-tenant-id", "", "tenant, sent as X-Scope-OrgID")
	fs.StringArrayVar(&f.Headers, "pyroscope-header", nil, "extra request header Name=Value (repeatable)")
	fs.StringVar(&f.CAFile, "pyroscope-ca-file", "", "PEM file of the authorities to trust for https")
	fs.StringVar(&f.CertFile, "pyroscope-cert-file", "", "client certificate, for mutual TLS")
	fs.StringVar(&f.KeyFile, "pyroscope-key-file", "", "client certificate's key, for mutual TLS")
	fs.StringVar(&f.ServerName, "pyroscope-server-name", "", "name to check in the server's certificate")
	fs.StringSliceVar(&f.DropSampleLabels, "pyroscope-drop-sample-labels", []string{"tid", "thread"},
		"sample labels not sent to Pyroscope, which makes a series of each distinct set")
	fs.Int64Var(&f.QueueBytes, "pyroscope-queue-bytes", pyroscope.DefaultQueueBytes, "byte budget of the upload queue; the oldest profiles are dropped beyond it")
}

// Config returns the Sink configuration the flags describe, with the
// credentials loaded. The caller sets Labels, Registerer and Logger.
func (f *pyroscopeFlags) Config() (pyroscope.Config, error) {
	pw, err := pyroscope.LoadSecret(f.BasicPassword, f.PassFile, pyroscope.EnvBasicPassword)
	if err != nil {
		return pyroscope.Config{}, fmt.Errorf("basic auth password: %w", err)
	}
	tok, err := pyroscope.LoadSecret(f.BearerToken, f.TokenFile, pyroscope.EnvBearerToken)
	if err != nil {
		return pyroscope.Config{}, fmt.Errorf("bearer token: %w", err)
	}
	if f.BasicUser == "" {
		pw = "" // a password in the environment alone does not turn basic auth on
	}
	headers, err := parseHeaders("--pyroscope-header", f.Headers)
	if err != nil {
		return pyroscope.Config{}, err
	}
	return pyroscope.Config{
		URL: f.URL,
		Auth: pyroscope.Auth{BasicUser: f.BasicUser, BasicPassword: pw, BearerToken: tok,
			TenantID: f.TenantID, Headers: headers},
		TLS:              pyroscope.TLS{CAFile: f.CAFile, CertFile: f.CertFile, KeyFile: f.KeyFile, ServerName: f.ServerName},
		QueueBytes:       f.QueueBytes,
		DropSampleLabels: f.DropSampleLabels,
	}, nil
}

// otlpFlags are the --otlp-* flags of the agent's command.
type otlpFlags struct {
	Endpoint         string
	Protocol         string
	Headers          []string
	CAFile           string
	QueueBytes       int64
	DropSampleLabels []string
}

// Register adds the --otlp-* flags to fs.
func (f *otlpFlags) Register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Endpoint, "otlp-endpoint", "", "export profiles to this OTLP receiver (v1development protocol), http://host:port or https://host:port")
	fs.StringVar(&f.Protocol, "otlp-protocol", otlp.ProtocolGRPC, "OTLP transport: "+otlp.ProtocolGRPC+" or "+otlp.ProtocolHTTP+" (POST to "+otlp.HTTPPath+" unless the endpoint has a path)")
	fs.StringArrayVar(&f.Headers, "otlp-header", nil, "extra request header (gRPC metadata) Name=Value, e.g. X-Scope-OrgID=tenant (repeatable)")
	fs.StringVar(&f.CAFile, "otlp-ca-file", "", "PEM file of the authorities to trust for an https endpoint")
	fs.Int64Var(&f.QueueBytes, "otlp-queue-bytes", pyroscope.DefaultQueueBytes, "byte budget of the OTLP upload queue; the oldest profiles are dropped beyond it")
	fs.StringSliceVar(&f.DropSampleLabels, "otlp-drop-sample-labels", []string{"tid", "thread"},
		"sample labels not exported (Pyroscope makes a series of each distinct set)")
}

// Config checks the flags and returns the sink configuration they describe.
// The caller sets Labels, Registerer and Logger.
func (f *otlpFlags) Config() (otlp.SinkConfig, error) {
	u, err := url.Parse(f.Endpoint)
	if err != nil {
		return otlp.SinkConfig{}, fmt.Errorf("--otlp-endpoint: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return otlp.SinkConfig{}, fmt.Errorf("--otlp-endpoint %q: want http://host:port or https://host:port", u.Redacted())
	}
	switch f.Protocol {
	case otlp.ProtocolGRPC:
		if u.Path != "" && u.Path != "/" {
			return otlp.SinkConfig{}, fmt.Errorf("--otlp-endpoint %q: a gRPC endpoint has no path", u.Redacted())
		}
	case otlp.ProtocolHTTP:
	default:
		return otlp.SinkConfig{}, fmt.Errorf("--otlp-protocol %q: want %s or %s", f.Protocol, otlp.ProtocolGRPC, otlp.ProtocolHTTP)
	}
	if f.CAFile != "" && u.Scheme != "https" {
		return otlp.SinkConfig{}, fmt.Errorf("--otlp-ca-file is for an https endpoint, not %s", u.Scheme)
	}
	if f.QueueBytes <= 0 {
		return otlp.SinkConfig{}, fmt.Errorf("--otlp-queue-bytes %d: want a positive budget", f.QueueBytes)
	}
	headers, err := parseHeaders("--otlp-header", f.Headers)
	if err != nil {
		return otlp.SinkConfig{}, err
	}
	return otlp.SinkConfig{
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

// fileSinkFlags are the --output-* flags that configure a filesink.Sink, for the agent's
// command to register.
type fileSinkFlags struct {
	Dir      string
	MaxBytes int64
	MaxAge   time.Duration
	Ext      string
}

// Register adds the --output-* flags to fs.
func (f *fileSinkFlags) Register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Dir, "output-dir", "", "write a file per service, kind and interval to this directory")
	fs.StringVar(&f.Ext, "output-format", ".pb.gz", "form of the files: .pb.gz (gzipped pprof), .html, .svg or .folded")
	fs.Int64Var(&f.MaxBytes, "output-max-bytes", filesink.DefaultMaxBytes, "remove the oldest files beyond this total size (negative: no limit)")
	fs.DurationVar(&f.MaxAge, "output-max-age", filesink.DefaultMaxAge, "remove files older than this (negative: keep for ever)")
}

// Config returns the Sink configuration the flags describe; it is only
// meaningful if Dir is set. The caller sets Labels, Registerer and Logger.
func (f *fileSinkFlags) Config() filesink.Config {
	return filesink.Config{Dir: f.Dir, MaxBytes: f.MaxBytes, MaxAge: f.MaxAge, Ext: f.Ext}
}

// parseHeaders reads repeated Name=Value flags into secret headers (values
// may carry credentials, so they are never printed).
func parseHeaders(flag string, hs []string) (map[string]pyroscope.Secret, error) {
	headers := map[string]pyroscope.Secret{}
	for _, h := range hs {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want Name=Value", flag, k)
		}
		headers[k] = pyroscope.Secret(v)
	}
	return headers, nil
}
