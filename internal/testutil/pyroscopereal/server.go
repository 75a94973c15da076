// Package pyroscopereal starts the real Grafana Pyroscope server kept in
// ../shared/pyroscope (beside the checkout) for tests, on 127.0.0.1, and
// reads profiles back through its query API. Tests that need faults the real
// server cannot produce use the stand-in in package pyroscopetest.
//
// The server is pyroscope.xz, decompressed (in Go, with ulikunitz/xz) into
// the test's temporary directory: CI's copy of shared/ is read-only. It is
// started with the flags of shared/pyroscope/start.sh (every listener on
// 127.0.0.1, v2 storage), on free ports, and stopped when the test ends.
//
// Flags start.sh lacks: -query-backend.address, which defaults to
// localhost:9095, the default gRPC port, so a server whose gRPC port is
// elsewhere (start.sh with any port but 4040, or free ports here) takes
// pushes but every query of stored data hangs until its 30 s deadline; and
// the admin (4042) and memberlist (7946) ports, fixed by default, so a
// second server on the machine fails to start.
//
// The server takes 45-100 s to become ready on 2 CPUs: a test binary
// should start it once (one test, with subtests).
package pyroscopereal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/emberprof/ember/internal/testutil"
)

// DirEnv overrides where pyroscope.xz is looked for.
const DirEnv = "EMBER_PYROSCOPE_DIR"

// Server is a running Pyroscope.
type Server struct {
	// URL is http://127.0.0.1:PORT, the HTTP port: push, ingest, queries,
	// and the OTLP receiver, both its HTTP path /v1development/profiles
	// and its gRPC ProfilesService/Export (HTTP/2 without TLS). The
	// server's own gRPC port does not serve OTLP.
	URL string
	dir string

	bin    string
	args   []string
	cmd    *exec.Cmd     // nil while stopped
	exited chan struct{} // closed when cmd has exited
}

// Dir returns the directory holding pyroscope.xz: $EMBER_PYROSCOPE_DIR, else
// ../shared/pyroscope beside the checkout.
func Dir() string {
	if d := os.Getenv(DirEnv); d != "" {
		return d
	}
	return filepath.Join(testutil.RepoRoot(), "..", "shared", "pyroscope")
}

// Start starts a server for the test, or skips it (fails it under
// EMBER_REQUIRE_BPF=1) when pyroscope.xz is missing. It waits up to two
// minutes for /ready (about 45 s on 2 CPUs).
func Start(t testing.TB) *Server {
	t.Helper()
	src := filepath.Join(Dir(), "pyroscope.xz")
	if _, err := os.Stat(src); err != nil {
		testutil.SkipOrFail(t, "no Pyroscope server: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "pyroscope")
	if err := decompress(src, bin); err != nil {
		t.Fatal(err)
	}
	httpPort, grpcPort, raftPort := freePort(t), freePort(t), freePort(t)
	adminPort, memberPort := freePort(t), freePort(t)
	a := "127.0.0.1"
	args := []string{"-target=all", "-architecture.storage=v2", "-usage-stats.enabled=false", "-self-profiling.disable-push=true",
		"-server.http-listen-address=" + a, "-server.http-listen-port=" + strconv.Itoa(httpPort),
		"-server.grpc-listen-address=" + a, "-server.grpc-listen-port=" + strconv.Itoa(grpcPort),
		"-admin-server.http-listen-address=" + a, "-memberlist.bind-addr=" + a, "-memberlist.advertise-addr=" + a,
		fmt.Sprintf("-metastore.address=%s:%d/node1", a, grpcPort),
		fmt.Sprintf("-metastore.raft.bind-address=%s:%d", a, raftPort), fmt.Sprintf("-metastore.raft.advertise-address=%s:%d", a, raftPort),
		"-metastore.raft.server-id=node1", fmt.Sprintf("-metastore.raft.bootstrap-peers=%s:%d/node1", a, raftPort),
		"-metastore.min-ready-duration=0", fmt.Sprintf("-query-backend.address=%s:%d", a, grpcPort),
		"-admin-server.http-listen-port=" + strconv.Itoa(adminPort),
		"-memberlist.bind-port=" + strconv.Itoa(memberPort), "-memberlist.advertise-port=" + strconv.Itoa(memberPort),
		"-compactor.ring.instance-addr=" + a, "-distributor.ring.instance-addr=" + a, "-ingester.lifecycler.addr=" + a,
		"-overrides-exporter.ring.instance-addr=" + a, "-query-frontend.instance-addr=" + a, "-query-scheduler.ring.instance-addr=" + a,
		"-segment-writer.lifecycler.addr=" + a, "-store-gateway.sharding-ring.instance-addr=" + a}
	s := &Server{URL: fmt.Sprintf("http://%s:%d", a, httpPort), dir: dir, bin: bin, args: args}
	t.Cleanup(s.stop)
	s.run(t)
	return s
}

// run starts the server process and waits up to two minutes for /ready.
func (s *Server) run(t testing.TB) {
	t.Helper()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	logf, err := os.OpenFile(filepath.Join(s.dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("pyroscope exited before it was ready:\n%s", s.LogTail())
		default:
		}
		if resp, err := http.Get(s.URL + "/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("pyroscope not ready in 2 minutes:\n%s", s.LogTail())
}

// stop ends the server: gracefully (up to ~30 s), else killed.
func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(35 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Stop stops the server, keeping its data and ports, for a test of an
// outage; Restart starts it again.
func (s *Server) Stop() { s.stop() }

// Restart starts a stopped server again on the same ports and data, and
// waits for it to be ready (45-100 s on 2 CPUs).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.run(t)
}

// LogTail returns the end of the server's log, for a failing test to show.
func (s *Server) LogTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func decompress(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("pyroscopereal: %w", err)
	}
	defer in.Close()
	zr, err := xz.NewReader(in)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("pyroscopereal: %w", err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		out.Close()
		return fmt.Errorf("decompressing %s: %w", src, err)
	}
	return out.Close()
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Flamegraph is what SelectMergeStacktraces answers: frame names and the
// total of the selected profiles.
type Flamegraph struct {
	Names []string
	Total int64
}

// Has reports whether name is one of the flame graph's frames.
func (f Flamegraph) Has(name string) bool {
	for _, n := range f.Names {
		if n == name {
			return true
		}
	}
	return false
}

// Query merges the profiles of profileType (e.g.
// "process_cpu:cpu:nanoseconds:cpu:nanoseconds") matching selector (e.g.
// `{service_name="x"}`) between start and end.
func (s *Server) Query(ctx context.Context, profileType, selector string, start, end time.Time) (Flamegraph, error) {
	body, _ := json.Marshal(map[string]any{"profile_typeID": profileType, "label_selector": selector,
		"start": start.UnixMilli(), "end": end.UnixMilli()})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/querier.v1.QuerierService/SelectMergeStacktraces", bytes.NewReader(body))
	if err != nil {
		return Flamegraph{}, fmt.Errorf("query: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Flamegraph{}, fmt.Errorf("query: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		return Flamegraph{}, fmt.Errorf("query: %s: %s", resp.Status, b)
	}
	var r struct {
		Flamegraph struct {
			Names []string `json:"names"`
			Total string   `json:"total"`
		} `json:"flamegraph"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Flamegraph{}, fmt.Errorf("query: %w", err)
	}
	total, _ := strconv.ParseInt(strings.TrimSpace(r.Flamegraph.Total), 10, 64)
	return Flamegraph{Names: r.Flamegraph.Names, Total: total}, nil
}

// WaitFor queries until the flame graph has frame name, or ctx ends: data
// reaches queries a few seconds after it is pushed.
func (s *Server) WaitFor(ctx context.Context, profileType, selector, name string, start, end time.Time) (Flamegraph, error) {
	for {
		fg, err := s.Query(ctx, profileType, selector, start, end)
		if err == nil && fg.Has(name) {
			return fg, nil
		}
		select {
		case <-ctx.Done():
			return fg, fmt.Errorf("%s %s: no frame %q before the deadline (last error: %v)", profileType, selector, name, err)
		case <-time.After(time.Second):
		}
	}
}
