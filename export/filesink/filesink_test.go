package filesink

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberprof/ember/export/sink"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testProfile returns a CPU profile with n stacks worth 1..n samples.
func testProfile(n int) *profile.Profile {
	m := &profile.Mapping{ID: 1, Start: 0x1000, Limit: 0x9000, File: "/bin/w"}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"}, Period: 10101010,
		Mapping: []*profile.Mapping{m},
	}
	for i := range n {
		f := &profile.Function{ID: uint64(i + 1), Name: "f" + strings.Repeat("x", i%50)}
		l := &profile.Location{ID: uint64(i + 1), Mapping: m, Address: 0x1000 + uint64(i), Line: []profile.Line{{Function: f}}}
		p.Function, p.Location = append(p.Function, f), append(p.Location, l)
		p.Sample = append(p.Sample, &profile.Sample{Location: []*profile.Location{l}, Value: []int64{int64(i + 1), int64(i+1) * 10101010}})
	}
	return p
}

func newSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(t.Context()) })
	return s
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return n
}

func TestNamesByTimeAndService(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Date(2026, 11, 22, 2, 11, 26, 123456789, time.UTC)}
	s := newSink(t, Config{Dir: dir, Labels: map[string]string{"hostname": "node-1"}, now: clk.now})
	p := testProfile(20)
	at := time.Date(2026, 11, 22, 3, 4, 5, 6e6, time.FixedZone("CET", 3600))
	for _, sp := range []sink.Profile{
		{Service: "checkout", Name: sink.NameCPU, Profile: p, Time: at, Labels: map[string]string{"pid": "42"}},
		{Service: "checkout", Name: sink.NameOffCPU, Profile: p, Time: at},
		{Service: "checkout", Name: sink.NameCPU, Profile: p, Time: at},   // same name: suffixed
		{Service: "/usr/bin/web api  v2", Name: sink.NameCPU, Profile: p}, // no time: now
		{Service: "../../etc", Name: sink.NameCPU, Profile: p},
		{Service: "", Name: sink.NameCPU, Profile: p},
	} {
		if err := s.Enqueue(sp); err != nil {
			t.Fatal(err)
		}
	}
	got := names(t, dir)
	want := []string{
		"20261122T020405.006Z_checkout_offcpu.pb.gz",
		"20261122T020405.006Z_checkout_process_cpu-1.pb.gz",
		"20261122T020405.006Z_checkout_process_cpu.pb.gz",
		"20261122T021126.123Z_etc_process_cpu.pb.gz",
		"20261122T021126.123Z_unknown_process_cpu.pb.gz",
		"20261122T021126.123Z_usr-bin-web-api-v2_process_cpu.pb.gz",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("files\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	f, err := os.Open(filepath.Join(dir, want[2]))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	q, err := profile.Parse(f)
	if err != nil {
		t.Fatalf("%s is not a pprof file: %v", want[2], err)
	}
	var total int64
	for _, smp := range q.Sample {
		total += smp.Value[0]
	}
	if len(q.Sample) != 20 || total != 210 {
		t.Errorf("file holds %d samples worth %d, want 20 worth 210", len(q.Sample), total)
	}
	for _, c := range []string{"ember: pid=42", "ember: hostname=node-1", "ember: service_name=checkout", "ember: __name__=process_cpu"} {
		if !slices.Contains(q.Comments, c) {
			t.Errorf("comments %q lack %q", q.Comments, c)
		}
	}
	if len(p.Comments) != 0 {
		t.Errorf("the caller's profile got comments %q", p.Comments)
	}
	if fi, _ := os.Stat(filepath.Join(dir, want[0])); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
}

func TestRotateBySize(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	// Measure one file.
	probe := newSink(t, Config{Dir: t.TempDir(), now: clk.now})
	path, err := probe.Write(sink.Profile{Service: "a", Name: sink.NameCPU, Profile: testProfile(200)})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size()
	reg := prometheus.NewRegistry()
	s := newSink(t, Config{Dir: dir, MaxBytes: 3*size + size/2, now: clk.now, Registerer: reg})
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), make([]byte, 10*size), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		clk.add(15 * time.Second)
		if err := s.Enqueue(sink.Profile{Service: "a", Name: sink.NameCPU, Profile: testProfile(200)}); err != nil {
			t.Fatal(err)
		}
	}
	got := names(t, dir)
	want := []string{
		"20260101T000200.000Z_a_process_cpu.pb.gz",
		"20260101T000215.000Z_a_process_cpu.pb.gz",
		"20260101T000230.000Z_a_process_cpu.pb.gz",
		"notes.txt", // not ours: untouched, and not counted
	}
	if !slices.Equal(got, want) {
		t.Errorf("files %v, want the 3 newest and notes.txt: %v", got, want)
	}
	st := s.Stats()
	if st.Written != 10 || st.Removed["size"] != 7 || st.DirFiles != 3 || st.DirBytes != 3*size {
		t.Errorf("stats %+v: want 10 written, 7 removed by size, 3 files of %d bytes", st, size)
	}
	if _, err := New(Config{Dir: dir, Registerer: reg}); err == nil {
		t.Error("a second sink registered the same metrics")
	}

	// A file larger than the budget alone is still kept: it is the newest.
	clk.add(time.Minute)
	big, err := s.Write(sink.Profile{Service: "a", Name: sink.NameCPU, Profile: testProfile(2000)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(big); err != nil {
		t.Errorf("the newest file was removed: %v", err)
	}
	if st := s.Stats(); st.DirFiles != 1 {
		t.Errorf("%d files after a file over the budget, want 1", st.DirFiles)
	}
}

func TestRotateByAge(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newSink(t, Config{Dir: dir, MaxAge: time.Hour, now: clk.now})
	write := func(service string) {
		if err := s.Enqueue(sink.Profile{Service: service, Name: sink.NameOffCPU, Profile: testProfile(5)}); err != nil {
			t.Fatal(err)
		}
	}
	write("a") // 00:00
	clk.add(40 * time.Minute)
	write("b") // 00:40
	clk.add(30 * time.Minute)
	write("c") // 01:10: a is 70 minutes old
	want := []string{"20260101T004000.000Z_b_offcpu.pb.gz", "20260101T011000.000Z_c_offcpu.pb.gz"}
	if got := names(t, dir); !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
	if st := s.Stats(); st.Removed["age"] != 1 {
		t.Errorf("stats %+v: want 1 removed by age", st)
	}

	// A new sink on the same directory, two hours later, applies the bound
	// at once, removes a temporary file left by a crash, and leaves
	// foreign files alone.
	for _, n := range []string{tmpPrefix + "123", "my.pb.gz", "20260101T000000.000Z_x.pb.gz.bak"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	clk.add(2 * time.Hour)
	s2 := newSink(t, Config{Dir: dir, MaxAge: time.Hour, now: clk.now})
	want = []string{"20260101T000000.000Z_x.pb.gz.bak", "my.pb.gz"}
	if got := names(t, dir); !slices.Equal(got, want) {
		t.Errorf("files %v after restart, want %v", got, want)
	}
	if st := s2.Stats(); st.Removed["age"] != 2 || st.DirFiles != 0 {
		t.Errorf("stats %+v after restart: want 2 removed by age, none left", st)
	}
}

func TestClosedAndErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a directory succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Dir: filepath.Join(file, "sub")}); err == nil {
		t.Error("New under a regular file succeeded")
	}
	s := newSink(t, Config{Dir: t.TempDir()})
	if err := s.Enqueue(sink.Profile{Service: "a", Name: sink.NameCPU}); err == nil {
		t.Error("a profile without data was written")
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(sink.Profile{Service: "a", Name: sink.NameCPU, Profile: testProfile(1)}); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close = %v, want ErrClosed", err)
	}
}

// Multi hands a profile to a file sink and another sink, and closes both.
func TestMulti(t *testing.T) {
	a := newSink(t, Config{Dir: t.TempDir()})
	b := newSink(t, Config{Dir: t.TempDir()})
	m := sink.Multi(a, b)
	if err := m.Enqueue(sink.Profile{Service: "s", Name: sink.NameCPU, Profile: testProfile(3)}); err != nil {
		t.Fatal(err)
	}
	if a.Stats().Written != 1 || b.Stats().Written != 1 {
		t.Errorf("written %d and %d, want 1 each", a.Stats().Written, b.Stats().Written)
	}
	if err := m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := m.Enqueue(sink.Profile{Service: "s", Name: sink.NameCPU, Profile: testProfile(3)}); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close = %v, want ErrClosed", err)
	}
}

// The files take the form their extension names: a flame graph page here.
func TestExtHTML(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{Dir: dir, Ext: ".html"})
	if err != nil {
		t.Fatal(err)
	}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "cpu", Unit: "nanoseconds"}},
		Sample:     []*profile.Sample{{Value: []int64{1}}},
	}
	name, err := s.Write(sink.Profile{Service: "svc", Name: sink.NameCPU, Profile: p, Time: time.Unix(1e9, 0)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(name, "_svc_process_cpu.html") || !strings.Contains(string(b), "<html") {
		t.Errorf("%s: not an HTML flame graph (%d bytes)", name, len(b))
	}
	if _, err := New(Config{Dir: dir, Ext: ".exe"}); err == nil {
		t.Error("an unknown extension was accepted")
	}
}
