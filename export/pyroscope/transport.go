package pyroscope

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/sink"
)

// Transport replaces the push API under a Sink's queue, so that another
// protocol (OTLP, in package export/otlp) gets the same queue, byte budget,
// retries, backoff, age limit, trimming to the server's limits and counters,
// instead of a second mechanism for the same job.
type Transport struct {
	// Subsystem names the metrics: ember_<Subsystem>_profiles_sent_total...
	Subsystem string
	// Encode returns the bytes to queue for p. trimmed is p's profile with
	// the configured sample labels dropped and, past the limits, its
	// coldest samples.
	Encode func(p *sink.Profile, trimmed *profile.Profile) ([]byte, error)
	// Send makes one attempt. Retried are results without a status (a
	// transport error), 5xx, 408 and 429, as for the push API.
	Send func(ctx context.Context, c *Conn, data []byte) Result
	// Close, if set, releases the transport's connections when the Sink
	// closes.
	Close func() error
}

// Conn is what Send may use of the Sink's configuration: the HTTP client
// built from its TLS settings (no redirects followed) and its credentials.
type Conn struct {
	Client *http.Client
	auth   *Auth
	now    func() time.Time
}

// SetAuth sets the configured credentials, tenant and extra headers on h.
func (c *Conn) SetAuth(h http.Header) { c.auth.apply(h) }

// RetryAfter reads a Retry-After header value (seconds or an HTTP date).
func (c *Conn) RetryAfter(v string) time.Duration { return parseRetryAfter(v, c.now()) }

// Result is the outcome of one attempt of a Transport.
type Result struct {
	Status     int // HTTP status, or the HTTP equivalent of a gRPC code; 0 if no answer
	RetryAfter time.Duration
	Err        error
}

// NewWithTransport returns a Sink whose uploads go through tr. cfg.URL must
// still be an http(s) URL: it is what the sink's logs name, and a transport
// reads its scheme to choose TLS.
func NewWithTransport(cfg Config, tr Transport) (*Sink, error) {
	if tr.Subsystem == "" || tr.Encode == nil || tr.Send == nil {
		return nil, errors.New("pyroscope: a transport needs a subsystem, Encode and Send")
	}
	return newQueued(cfg, &tr)
}

// ClientTLS returns the TLS client configuration t describes, for a
// transport that dials itself (gRPC).
func (t *TLS) ClientTLS() (*tls.Config, error) { return t.config() }
