package debuginfod_test

import (
	"bufio"
	"context"
	"debug/elf"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/internal/testutil"
	"github.com/emberprof/ember/symbolize/debuginfod"
)

// binary is a program built at test time: the stripped executable the
// "process" runs, and what its debug information says, to check against.
type binary struct {
	stripped, debug string // the stripped executable and its debug file
	buildID         string
	leaf            uint64 // ember_leaf's address (an ELF virtual address)
	leafLine        int    // its line, as addr2line reads the unstripped binary
}

// buildBinary compiles testdata/leaf.c with -DVARIANT=variant into dir as
// name (gcc -g), splits off its debug file (objcopy --only-keep-debug) and
// strips it, as a distribution does.
func buildBinary(t *testing.T, dir, name string, variant int) binary {
	t.Helper()
	gcc := testutil.RequireTool(t, "gcc")
	objcopy := testutil.RequireTool(t, "objcopy")
	strip := testutil.RequireTool(t, "strip")
	addr2line := testutil.RequireTool(t, "addr2line")
	full := filepath.Join(dir, name+".full")
	src, _ := filepath.Abs("testdata/leaf.c")
	testutil.Run(t, dir, gcc, "-g", "-O1", "-Wl,--build-id", fmt.Sprintf("-DVARIANT=%d", variant), "-o", full, src)
	b := binary{stripped: filepath.Join(dir, name), debug: filepath.Join(dir, name+".debug")}
	testutil.Run(t, dir, objcopy, "--only-keep-debug", full, b.debug)
	testutil.Run(t, dir, strip, "--strip-all", "-o", b.stripped, full)
	f, err := os.Open(full)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b.buildID, err = debuginfod.BuildID(f); err != nil {
		t.Fatal(err)
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		t.Fatal(err)
	}
	syms, err := ef.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if s.Name == "ember_leaf" {
			b.leaf = s.Value
		}
	}
	if b.leaf == 0 {
		t.Fatalf("%s: no ember_leaf symbol", full)
	}
	out := testutil.Run(t, dir, addr2line, "-e", full, fmt.Sprintf("%#x", b.leaf))
	_, line, _ := strings.Cut(strings.TrimSpace(out), ":")
	if b.leafLine, err = strconv.Atoi(strings.Fields(line)[0]); err != nil || b.leafLine == 0 {
		t.Fatalf("addr2line %s: %q", full, out)
	}
	return b
}

const base = 0x555555554000 // where the "process" mapped the binary

// profileOf returns a profile with one location, at ember_leaf, in a mapping
// of each binary, as the tracer would hand it over (no build IDs read yet).
func profileOf(bins ...binary) *profile.Profile {
	p := &profile.Profile{SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}}}
	for i, b := range bins {
		start := uint64(base + i<<32)
		m := &profile.Mapping{ID: uint64(i + 1), Start: start, Limit: start + 1<<20, File: b.stripped}
		l := &profile.Location{ID: uint64(i + 1), Mapping: m, Address: start + b.leaf}
		p.Mapping = append(p.Mapping, m)
		p.Location = append(p.Location, l)
		p.Sample = append(p.Sample, &profile.Sample{Location: []*profile.Location{l}, Value: []int64{1}})
	}
	return p
}

// leafFrame returns the function and line symbolized at location i, or
// ("", 0).
func leafFrame(p *profile.Profile, i int) (string, int) {
	l := p.Location[i]
	if len(l.Line) == 0 || l.Line[0].Function == nil {
		return "", 0
	}
	return l.Line[0].Function.Name, int(l.Line[0].Line)
}

// server is a real debuginfod (elfutils) serving a directory.
type server struct {
	url string
}

// startDebuginfod runs Debian's debuginfod on 127.0.0.1 over dir (-F: plain
// ELF and DWARF files) and waits until it has scanned the files dir holds.
// debuginfod 0.188 has no option to bind one address: it listens on every
// interface; the tests talk to it on 127.0.0.1.
func startDebuginfod(t *testing.T, dir string) *server {
	t.Helper()
	bin := testutil.RequireTool(t, "debuginfod")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cmd := exec.Command(bin, "-F", "-p", strconv.Itoa(port), "-d", filepath.Join(t.TempDir(), "db.sqlite"), "-t", "0", "-g", "0", dir)
	logf, err := os.Create(filepath.Join(t.TempDir(), "debuginfod.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	s := &server{url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if n, err := s.metric("scanned_files_total{source=\"file\"}"); err == nil && n >= float64(len(ents)) {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(logf.Name())
	t.Fatalf("debuginfod did not scan %s within 60 s:\n%s", dir, b)
	return nil
}

// metric reads one series of the server's /metrics (0 if absent).
func (s *server) metric(series string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, sc.Err()
}

// buildIDRequests is the number of /buildid requests the server has answered.
func (s *server) buildIDRequests(t *testing.T) float64 {
	t.Helper()
	var n float64
	for _, k := range []string{"debuginfo", "executable"} {
		v, err := s.metric(`http_requests_total{type="` + k + `"}`)
		if err != nil {
			t.Fatal(err)
		}
		n += v
	}
	return n
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
