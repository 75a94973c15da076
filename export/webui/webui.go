package webui

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/pprof/driver"
	"github.com/google/pprof/profile"
)

// DefaultAddr is where Serve listens when Options.Addr is empty: a free
// port on the loopback interface.
const DefaultAddr = "localhost:0"

// Options control Serve.
type Options struct {
	// Addr is the host:port to listen on; "" is DefaultAddr.
	Addr string
	// Log receives pprof's messages ("Serving web UI on ..."); nil
	// discards them.
	Log io.Writer
	// Ready, if set, is called with the UI's URL once it accepts connections.
	Ready func(url string)
}

// Serve serves p's web UI until ctx is done or the server fails. It returns
// nil when ctx ends it.
func Serve(ctx context.Context, p *profile.Profile, opts Options) error {
	if p == nil {
		return errors.New("webui: nil profile")
	}
	addr := opts.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("webui: %w", err)
	}
	defer ln.Close()
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	hostport := ln.Addr().String()
	srv := &server{ctx: ctx, ln: ln, local: isLoopback(ln.Addr()), ready: opts.Ready}
	if !srv.local {
		fmt.Fprintf(log, "warning: %s is not a loopback address: whoever reaches it can read the profile\n", hostport)
	}
	err = driver.PProf(&driver.Options{
		// The listener is open, so pprof's -http has a port and picks none
		// of its own; the HTTPServer hook serves on this listener.
		Flagset:    newFlags([]string{"-http=" + hostport, "-no_browser", "-symbolize=none", "ember-profile"}),
		Fetch:      fetcher{p},
		UI:         quietUI{log},
		HTTPServer: srv.serve,
	})
	if err != nil {
		return fmt.Errorf("webui: %w", err)
	}
	return nil
}

// server serves pprof's handlers on a listener until its context ends.
type server struct {
	ctx   context.Context
	ln    net.Listener
	local bool
	ready func(string)
}

func (s *server) serve(args *driver.HTTPServerArgs) error {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.local && !(loopbackClient(r.RemoteAddr) && loopbackHost(r.Host)) {
			http.Error(w, "forbidden: the profile is served to this machine only", http.StatusForbidden)
			return
		}
		handler, ok := args.Handlers[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		handler.ServeHTTP(w, r)
	})
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-s.ctx.Done():
			shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			hs.Shutdown(shut)
		case <-done:
		}
	}()
	if s.ready != nil {
		s.ready("http://" + s.ln.Addr().String() + "/")
	}
	if err := hs.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func loopbackClient(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackHost reports whether a Host header names this machine: localhost
// or a loopback address, so that a page from elsewhere that rebinds its name
// to 127.0.0.1 is refused.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// fetcher hands pprof the profile already in memory.
type fetcher struct{ p *profile.Profile }

func (f fetcher) Fetch(string, time.Duration, time.Duration) (*profile.Profile, string, error) {
	return f.p.Copy(), "", nil
}

// quietUI is pprof's UI without a terminal: no commands, messages to a log.
type quietUI struct{ w io.Writer }

func (u quietUI) ReadLine(string) (string, error)     { return "", io.EOF }
func (u quietUI) Print(args ...any)                   { u.line(args...) }
func (u quietUI) PrintErr(args ...any)                { u.line(args...) }
func (u quietUI) IsTerminal() bool                    { return false }
func (u quietUI) WantBrowser() bool                   { return false }
func (u quietUI) SetAutoComplete(func(string) string) {}

func (u quietUI) line(args ...any) {
	s := fmt.Sprint(args...)
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	io.WriteString(u.w, s)
}

// flags is pprof's driver.FlagSet over a standard flag.FlagSet with fixed
// arguments: pprof never sees ember's command line.
type flags struct {
	fs    *flag.FlagSet
	args  []string
	extra []string
}

func newFlags(args []string) *flags {
	fs := flag.NewFlagSet("pprof", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &flags{fs: fs, args: args}
}

func (f *flags) Bool(n string, d bool, u string) *bool          { return f.fs.Bool(n, d, u) }
func (f *flags) Int(n string, d int, u string) *int             { return f.fs.Int(n, d, u) }
func (f *flags) Float64(n string, d float64, u string) *float64 { return f.fs.Float64(n, d, u) }
func (f *flags) String(n string, d string, u string) *string    { return f.fs.String(n, d, u) }
func (f *flags) ExtraUsage() string                             { return strings.Join(f.extra, "\n") }
func (f *flags) AddExtraUsage(eu string)                        { f.extra = append(f.extra, eu) }

func (f *flags) StringList(n string, d string, u string) *[]*string {
	l := &stringList{}
	if d != "" {
		l.v = append(l.v, &d)
	}
	f.fs.Var(l, n, u)
	return &l.v
}

func (f *flags) Parse(usage func()) []string {
	if err := f.fs.Parse(f.args); err != nil {
		usage()
		return nil
	}
	return f.fs.Args()
}

// stringList is a repeatable string flag.
type stringList struct{ v []*string }

func (l *stringList) String() string { return "" }
func (l *stringList) Set(s string) error {
	l.v = append(l.v, &s)
	return nil
}
