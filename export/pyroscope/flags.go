package pyroscope

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// Environment variables read for credentials not given by flag or file.
const (
	EnvBasicPassword = "EMBER_PYROSCOPE_PASSWORD"
	EnvBearerToken   = "EMBER_PYROSCOPE_TOKEN"
)

// Flags are the command-line flags that configure a Sink, for the agent's
// command to register. Credentials come from a flag, a file (the -file
// flags) or the environment, in that order; a flag shows in the process
// list, so prefer a file or the environment.
type Flags struct {
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
func (f *Flags) Register(fs *pflag.FlagSet) {
	fs.StringVar(&f.URL, "pyroscope-url", "", "send profiles to the Pyroscope server at this URL")
	fs.StringVar(&f.BasicUser, "pyroscope-basic-auth-user", "", "basic auth user")
	fs.StringVar(&f.BasicPassword, "pyroscope-basic-auth-password", "", "basic auth password (visible in ps; prefer the file or $"+EnvBasicPassword+")")
	fs.StringVar(&f.PassFile, "pyroscope-basic-auth-password-file", "", "read the basic auth password from this file")
	fs.StringVar(&f.BearerToken, "pyroscope-bearer-token", "", "bearer token (visible in ps; prefer the file or $"+EnvBearerToken+")")
	fs.StringVar(&f.TokenFile, "pyroscope-bearer-token-file", "", "read the bearer token from this file")
	fs.StringVar(&f.TenantID, "pyroscope-tenant-id", "", "tenant, sent as X-Scope-OrgID")
	fs.StringArrayVar(&f.Headers, "pyroscope-header", nil, "extra request header Name=Value (repeatable)")
	fs.StringVar(&f.CAFile, "pyroscope-ca-file", "", "PEM file of the authorities to trust for https")
	fs.StringVar(&f.CertFile, "pyroscope-cert-file", "", "client certificate, for mutual TLS")
	fs.StringVar(&f.KeyFile, "pyroscope-key-file", "", "client certificate's key, for mutual TLS")
	fs.StringVar(&f.ServerName, "pyroscope-server-name", "", "name to check in the server's certificate")
	fs.StringSliceVar(&f.DropSampleLabels, "pyroscope-drop-sample-labels", []string{"tid", "thread"},
		"sample labels not sent to Pyroscope, which makes a series of each distinct set")
	fs.Int64Var(&f.QueueBytes, "pyroscope-queue-bytes", DefaultQueueBytes, "byte budget of the upload queue; the oldest profiles are dropped beyond it")
}

// Config returns the Sink configuration the flags describe, with the
// credentials loaded. The caller sets Labels, Registerer and Logger.
func (f *Flags) Config() (Config, error) {
	pw, err := LoadSecret(f.BasicPassword, f.PassFile, EnvBasicPassword)
	if err != nil {
		return Config{}, fmt.Errorf("basic auth password: %w", err)
	}
	tok, err := LoadSecret(f.BearerToken, f.TokenFile, EnvBearerToken)
	if err != nil {
		return Config{}, fmt.Errorf("bearer token: %w", err)
	}
	if f.BasicUser == "" {
		pw = "" // a password in the environment alone does not turn basic auth on
	}
	headers := map[string]Secret{}
	for _, h := range f.Headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return Config{}, fmt.Errorf("--pyroscope-header %q: want Name=Value", k)
		}
		headers[k] = Secret(v)
	}
	return Config{
		URL: f.URL,
		Auth: Auth{BasicUser: f.BasicUser, BasicPassword: pw, BearerToken: tok,
			TenantID: f.TenantID, Headers: headers},
		TLS:              TLS{CAFile: f.CAFile, CertFile: f.CertFile, KeyFile: f.KeyFile, ServerName: f.ServerName},
		QueueBytes:       f.QueueBytes,
		DropSampleLabels: f.DropSampleLabels,
	}, nil
}
