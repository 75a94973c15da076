package pyroscope

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for a zero Config field.
const (
	DefaultQueueBytes = 64 << 20
	DefaultTimeout    = 30 * time.Second
	DefaultMinBackoff = 500 * time.Millisecond
	// DefaultMaxBackoff bounds the wait between attempts while the server
	// fails: each is a probe of one profile, so probing every few seconds
	// costs little and the queue drains soon after the server is back.
	DefaultMaxBackoff = 5 * time.Second
	// DefaultMaxBatchProfiles and DefaultMaxBatchBytes bound one push
	// request: the push API takes a list of series, one per profile.
	DefaultMaxBatchProfiles = 64
	DefaultMaxBatchBytes    = 2 << 20
	DefaultConcurrency      = 2
	// DefaultMaxAge keeps a margin below the server's one hour for clock
	// skew and for the time the last attempt spends in flight.
	DefaultMaxAge = 55 * time.Minute
	// DefaultMaxSamples and DefaultMaxProfileBytes are Pyroscope's default
	// max_profile_stacktrace_samples and max_profile_size_bytes (the size
	// of the uncompressed pprof).
	DefaultMaxSamples      = 16000
	DefaultMaxProfileBytes = 4 << 20
)

// Environment variables read for credentials not given by flag or file.
const (
	EnvBasicPassword = "EMBER_PYROSCOPE_PASSWORD"
	EnvBearerToken   = "EMBER_PYROSCOPE_TOKEN"
)

// Sizes of things read from files and the environment.
const maxSecretBytes = 64 << 10

// Secret is a credential. It prints as [REDACTED] with every fmt verb, in
// slog and in encoders that use TextMarshaler; Value returns the secret.
type Secret string

const redacted = "[REDACTED]"

var _ slog.LogValuer = Secret("")

// Value returns the secret itself.
func (s Secret) Value() string { return string(s) }

func (s Secret) String() string                { return s.redact() }
func (s Secret) GoString() string              { return s.redact() }
func (s Secret) LogValue() slog.Value          { return slog.StringValue(s.redact()) }
func (s Secret) MarshalText() ([]byte, error)  { return []byte(s.redact()), nil }
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(s.redact())) }
func (s Secret) redact() string {
	if s == "" {
		return ""
	}
	return redacted
}

// LoadSecret returns a credential from the first of its sources that is set:
// value (a flag), the contents of file (a trailing newline removed), or the
// environment variable env. Setting both value and file is an error: one of
// them would be silently ignored.
func LoadSecret(value, file, env string) (Secret, error) {
	switch {
	case value != "" && file != "":
		return "", errors.New("pyroscope: a secret is given both directly and in a file; give one")
	case value != "":
		return Secret(value), nil
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("pyroscope: secret file: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxSecretBytes+1))
		if err != nil {
			return "", fmt.Errorf("pyroscope: secret file %s: %w", file, err)
		}
		if len(b) > maxSecretBytes {
			return "", fmt.Errorf("pyroscope: secret file %s: larger than %d bytes", file, maxSecretBytes)
		}
		return Secret(strings.TrimRight(string(b), "\r\n")), nil
	case env != "":
		return Secret(os.Getenv(env)), nil
	}
	return "", nil
}

// Auth says how to authenticate to the server. At most one of basic auth and
// bearer token may be set.
type Auth struct {
	BasicUser     string
	BasicPassword Secret
	BearerToken   Secret
	// TenantID is sent as X-Scope-OrgID, for multi-tenant servers.
	TenantID string
	// Headers are extra request headers. Their values are secrets: an
	// Authorization header is often passed this way.
	Headers map[string]Secret
}

func (a *Auth) validate() error {
	if a.BearerToken != "" && (a.BasicUser != "" || a.BasicPassword != "") {
		return errors.New("pyroscope: both basic auth and a bearer token are set; give one")
	}
	if a.BasicPassword != "" && a.BasicUser == "" {
		return errors.New("pyroscope: basic auth password without a user")
	}
	for k := range a.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			return fmt.Errorf("pyroscope: invalid header name %q", k)
		}
	}
	return nil
}

// apply sets the authentication headers on a request.
func (a *Auth) apply(h http.Header) {
	switch {
	case a.BasicUser != "":
		r := http.Request{Header: h}
		r.SetBasicAuth(a.BasicUser, a.BasicPassword.Value())
	case a.BearerToken != "":
		h.Set("Authorization", "Bearer "+a.BearerToken.Value())
	}
	if a.TenantID != "" {
		h.Set("X-Scope-OrgID", a.TenantID)
	}
	for k, v := range a.Headers {
		h.Set(k, v.Value())
	}
}

// TLS configures the connection to an https server.
type TLS struct {
	// CAFile is a PEM bundle of the authorities to trust instead of the
	// system's.
	CAFile string
	// CertFile and KeyFile are a client certificate, for mutual TLS.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the server's certificate.
	ServerName string
}

func (t *TLS) config() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("pyroscope: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("pyroscope: CA file %s: no PEM certificates", t.CAFile)
		}
		c.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("pyroscope: a client certificate needs both a cert file and a key file")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("pyroscope: client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Config configures a Sink. Only URL is required.
type Config struct {
	// URL is the server's base URL, e.g. http://pyroscope:4040. User
	// information in it (https://user:pass@host) is used as basic auth.
	URL  string
	Auth Auth
	TLS  TLS
	// Labels are added to every profile's series labels (hostname, the
	// --label flags). A profile's own labels take precedence.
	Labels map[string]string

	// QueueBytes is the byte budget of the queue of encoded profiles.
	QueueBytes int64
	// MaxAge drops a queued profile this much older than its time stamp.
	MaxAge time.Duration
	// Timeout bounds one upload attempt.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts: it starts at
	// MinBackoff and doubles after each failed attempt, up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Concurrency is the number of uploads in flight at once.
	Concurrency int
	// MaxBatchProfiles and MaxBatchBytes (encoded) bound the profiles one
	// push request carries. A transport (OTLP) sends one at a time.
	MaxBatchProfiles int
	MaxBatchBytes    int64
	// MaxSamples and MaxProfileBytes are the server's per-profile limits;
	// a profile over them loses its coldest samples. Negative disables.
	MaxSamples      int
	MaxProfileBytes int
	// DropSampleLabels names sample labels (string or numeric) to remove
	// before sending; samples left alike are merged. Pyroscope makes a
	// series of every distinct set of sample labels, so per-thread labels
	// ("tid", "thread") multiply the series by the number of threads.
	DropSampleLabels []string

	// Registerer receives the sink's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Logger receives a warning for each profile refused (by Enqueue or by
	// the server) and at most one every 30s about profiles dropped from the
	// queue; the counters have the totals. Nil discards.
	Logger *slog.Logger
	// HTTPClient replaces the client built from TLS (for tests). Its
	// redirects should not be followed: they would strip Authorization.
	HTTPClient *http.Client

	now func() time.Time // for tests
}

// LogValue describes the configuration without its secrets.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", redactURL(c.URL)),
		slog.String("basic_user", c.Auth.BasicUser),
		slog.Bool("bearer_token", c.Auth.BearerToken != ""),
		slog.String("tenant", c.Auth.TenantID),
		slog.Int("headers", len(c.Auth.Headers)),
		slog.String("ca_file", c.TLS.CAFile),
		slog.Int64("queue_bytes", c.QueueBytes),
	)
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// withDefaults checks c and fills its zero fields.
func (c Config) withDefaults() (Config, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return c, fmt.Errorf("pyroscope: URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return c, fmt.Errorf("pyroscope: URL %q: want http:// or https:// and a host", redactURL(c.URL))
	}
	if u.User != nil {
		if c.Auth.BasicUser == "" && c.Auth.BearerToken == "" {
			c.Auth.BasicUser = u.User.Username()
			p, _ := u.User.Password()
			c.Auth.BasicPassword = Secret(p)
		}
		u.User = nil
	}
	u.RawQuery, u.Fragment = "", ""
	c.URL = strings.TrimRight(u.String(), "/")
	if err := c.Auth.validate(); err != nil {
		return c, err
	}
	for k, v := range c.Labels {
		if err := checkLabel(k, v); err != nil {
			return c, err
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.MaxAge, DefaultMaxAge)
	def(&c.Timeout, DefaultTimeout)
	def(&c.MinBackoff, DefaultMinBackoff)
	def(&c.MaxBackoff, DefaultMaxBackoff)
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxBatchProfiles <= 0 {
		c.MaxBatchProfiles = DefaultMaxBatchProfiles
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	// A request in flight is a copy of its profiles (the encoded message)
	// beside the queue: keep those copies a small part of the budget.
	c.MaxBatchBytes = max(1, min(c.MaxBatchBytes, c.QueueBytes/int64(4*c.Concurrency)))
	if c.MaxSamples == 0 {
		c.MaxSamples = DefaultMaxSamples
	}
	if c.MaxProfileBytes == 0 {
		c.MaxProfileBytes = DefaultMaxProfileBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.HTTPClient == nil {
		c.HTTPClient, err = newHTTPClient(&c.TLS, c.Concurrency)
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

// newHTTPClient returns a client that trusts t's authorities and does not
// follow redirects (Go drops Authorization on a redirect to another host,
// which turns a misconfigured URL into a confusing 401).
func newHTTPClient(t *TLS, conns int) (*http.Client, error) {
	tc, err := t.config()
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConnsPerHost = conns
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}
