package webui

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emberprof/ember/export/internal/synth"
)

// serve starts Serve on a free loopback port and returns the UI's URL; the
// server stops when the test ends, and the test checks that Serve returned.
func serve(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	var log bytes.Buffer
	go func() {
		errc <- Serve(ctx, synth.Known(), Options{Log: &log, Ready: func(u string) { ready <- u }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	select {
	case u := <-ready:
		return u
	case err := <-errc:
		t.Fatalf("Serve: %v (log: %s)", err, log.String())
	case <-time.After(30 * time.Second):
		t.Fatal("server not ready")
	}
	return ""
}

func get(t *testing.T, u string, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestServeFlameGraph(t *testing.T) {
	// Something registered on the default mux must not be reachable.
	http.HandleFunc("/ember-webui-test-default", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "leak") })

	base := serve(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	if h := u.Hostname(); h != "127.0.0.1" && h != "::1" {
		t.Errorf("listening on %s, want loopback", h)
	}
	// "/" redirects to pprof's flame graph, which carries the profile's
	// functions in its data.
	code, body := get(t, base, "")
	if code != http.StatusOK {
		t.Fatalf("GET /: %d", code)
	}
	for _, want := range []string{"flame", "compute", "helper", "vfs_read", "main"} {
		if !strings.Contains(body, want) {
			t.Errorf("flame graph page lacks %q", want)
		}
	}
	code, body = get(t, base+"top", "")
	if code != http.StatusOK || !strings.Contains(body, "compute") {
		t.Errorf("GET /top: %d, compute listed: %v", code, strings.Contains(body, "compute"))
	}
	if code, _ := get(t, base+"ember-webui-test-default", ""); code != http.StatusNotFound {
		t.Errorf("default mux handler reachable: %d", code)
	}
	if code, _ := get(t, base+"debug/pprof/", ""); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/: %d", code)
	}
	// A page whose name was rebound to 127.0.0.1 sends its own Host.
	if code, _ := get(t, base, "attacker.example:80"); code != http.StatusForbidden {
		t.Errorf("foreign Host header: %d, want 403", code)
	}
	if code, _ := get(t, base, "localhost:"+u.Port()); code != http.StatusOK {
		t.Errorf("Host localhost: %d", code)
	}
}

func TestServeBadAddr(t *testing.T) {
	err := Serve(context.Background(), synth.Known(), Options{Addr: "localhost:notaport"})
	if err == nil {
		t.Fatal("no error for a bad address")
	}
}

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "localhost:8080": true, "127.0.0.1:80": true, "[::1]:80": true, "a.localhost": true,
		"example.com": false, "10.0.0.1:80": false, "": false,
	} {
		if got := loopbackHost(host); got != want {
			t.Errorf("loopbackHost(%q) = %v", host, got)
		}
	}
}
