package pyroscopetest

import (
	"bytes"
	"context"
	"crypto/subtle"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// Pyroscope's default per-profile limits, which the server enforces.
const (
	MaxSamples      = 16000
	MaxProfileBytes = 4 << 20
	MaxAge          = time.Hour
)

// Options configure a Server. The zero value serves plain HTTP without
// authentication.
type Options struct {
	// TLS serves https with a self-signed certificate; see CertPEM.
	TLS bool
	// BasicUser and BasicPassword, BearerToken, TenantID: when set, a
	// request without them is answered 401.
	BasicUser, BasicPassword string
	BearerToken              string
	TenantID                 string
}

// Series is one profile the server accepted.
type Series struct {
	Endpoint string            // "push" or "ingest"
	Labels   map[string]string // series labels, __name__ and service_name included
	ID       string            // the push API's profile ID
	Profile  *profile.Profile  // decoded
	RawSize  int               // bytes of the uncompressed pprof
	Time     time.Time         // when it arrived
}

// Request is one HTTP request the server answered.
type Request struct {
	Path   string
	Header http.Header
	Start  time.Time
	End    time.Time
	Status int    // the answer; 0 if the client gave up while it hung
	Error  string // why a request was refused
	Series int    // the profiles it delivered (a push request carries a list)
}

// Server is a Pyroscope stand-in. Its methods may be called concurrently.
type Server struct {
	// URL is the base URL to give a client: http://127.0.0.1:port.
	URL string

	opts Options
	srv  *httptest.Server

	mu       sync.Mutex
	requests []Request
	series   []Series
	faults   []int         // statuses to answer next, one per request
	hang     chan struct{} // non-nil: requests wait until it is closed
	changed  chan struct{} // closed and replaced on every change
	closed   bool
}

// New starts a Server on 127.0.0.1 and closes it when the test ends.
func New(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s := &Server{opts: opts, changed: make(chan struct{})}
	mux := http.NewServeMux()
	path, push := newPushHandler(s)
	mux.Handle(path, push)
	mux.HandleFunc("/ingest", s.ingest)
	s.srv = httptest.NewUnstartedServer(s.middleware(mux))
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused TLS handshakes are expected in tests
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("pyroscopetest: listen: %v", err)
	}
	s.srv.Listener.Close()
	s.srv.Listener = l
	if opts.TLS {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	s.URL = s.srv.URL
	tb.Cleanup(s.Close)
	return s
}

// CertPEM returns the PEM certificate a client must trust to reach a TLS
// server.
func (s *Server) CertPEM() []byte {
	if s.srv.Certificate() == nil {
		return nil
	}
	return pemCert(s.srv.Certificate().Raw)
}

// Close releases hung requests and stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	if s.hang != nil {
		close(s.hang)
		s.hang = nil
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// FailNext makes the server answer status, with a plain text body as a proxy
// would, to the next n requests.
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, status)
	}
}

// Hang makes every request wait, unanswered, until Release or until its
// client gives up.
func (s *Server) Hang() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hang == nil {
		s.hang = make(chan struct{})
	}
}

// Release lets hung requests, and the ones to come, be answered.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hang != nil {
		close(s.hang)
		s.hang = nil
	}
}

// Requests returns the requests answered so far, in the order they ended.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Series returns the profiles accepted so far, in the order they arrived.
func (s *Server) Series() []Series {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.series)
}

// WaitSeries waits until at least n profiles were accepted, and returns them.
func (s *Server) WaitSeries(ctx context.Context, n int) ([]Series, error) {
	return wait(s, ctx, func() ([]Series, bool) { return slices.Clone(s.series), len(s.series) >= n },
		func(got []Series) error {
			return fmt.Errorf("pyroscopetest: %d profiles accepted, waited for %d", len(got), n)
		})
}

// WaitRequests waits until at least n requests were answered, and returns them.
func (s *Server) WaitRequests(ctx context.Context, n int) ([]Request, error) {
	return wait(s, ctx, func() ([]Request, bool) { return slices.Clone(s.requests), len(s.requests) >= n },
		func(got []Request) error {
			return fmt.Errorf("pyroscopetest: %d requests answered, waited for %d", len(got), n)
		})
}

func wait[T any](s *Server, ctx context.Context, cond func() (T, bool), fail func(T) error) (T, error) {
	for {
		s.mu.Lock()
		v, ok := cond()
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return v, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return v, fmt.Errorf("%w: %w", fail(v), ctx.Err())
		}
	}
}

func (s *Server) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// record adds a finished request, and the series it delivered, at once: a
// test that sees the request also sees its profiles.
func (s *Server) record(r Request, accepted []Series) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.Series = len(accepted)
	s.requests = append(s.requests, r)
	s.series = append(s.series, accepted...)
	s.changedLocked()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ctxKey carries, through a request's context, where the handlers put what
// they accepted and why they refused.
type ctxKey struct{}

type outcome struct {
	accepted []Series
	err      string
}

// middleware authenticates, applies the scripted faults and records.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := Request{Path: r.URL.Path, Header: r.Header.Clone(), Start: time.Now()}
		sw := &statusWriter{ResponseWriter: w}
		var out outcome
		defer func() {
			req.End, req.Status, req.Error = time.Now(), sw.status, out.err
			if req.Status != http.StatusOK {
				out.accepted = nil
			}
			s.record(req, out.accepted)
		}()
		if err := s.authenticate(r); err != "" {
			out.err = err
			http.Error(sw, err, http.StatusUnauthorized)
			return
		}
		// Read the request whole first, as a real server does: Go's server
		// only notices a client that gives up once the body has been read.
		body, err := io.ReadAll(http.MaxBytesReader(sw, r.Body, 4*MaxProfileBytes))
		if err != nil {
			out.err = err.Error()
			http.Error(sw, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.mu.Lock()
		hang := s.hang
		var fault int
		if len(s.faults) > 0 {
			fault, s.faults = s.faults[0], s.faults[1:]
		}
		s.mu.Unlock()
		if hang != nil {
			select {
			case <-hang:
			case <-r.Context().Done():
				out.err = "client gave up while the server hung"
				return
			}
		}
		if fault != 0 {
			out.err = fmt.Sprintf("scripted fault %d", fault)
			http.Error(sw, http.StatusText(fault), fault)
			return
		}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), ctxKey{}, &out)))
	})
}

func (s *Server) authenticate(r *http.Request) string {
	eq := func(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
	o := &s.opts
	if o.BasicUser != "" {
		u, p, ok := r.BasicAuth()
		if !ok || !eq(u, o.BasicUser) || !eq(p, o.BasicPassword) {
			return "bad or missing basic auth"
		}
	}
	if o.BearerToken != "" && !eq(r.Header.Get("Authorization"), "Bearer "+o.BearerToken) {
		return "bad or missing bearer token"
	}
	if o.TenantID != "" && r.Header.Get("X-Scope-OrgID") != o.TenantID {
		return "bad or missing X-Scope-OrgID"
	}
	return ""
}
