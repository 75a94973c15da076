package pyroscope

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/sink"
	"github.com/emberprof/ember/internal/testutil/pyroscopetest"
)

// A profile over the sample limit loses its coldest samples, the server
// (which enforces the limit) accepts it, and the counters say how many.
func TestTrimToSampleLimit(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	s := newSink(t, fastConfig(srv.URL))
	const n = 20000
	p := testProfile(sink.NameCPU, n, 0)
	if err := s.Enqueue(sink.Profile{Service: "big", Name: sink.NameCPU, Profile: p}); err != nil {
		t.Fatal(err)
	}
	if len(p.Sample) != n || len(p.Comments) != 0 {
		t.Errorf("the caller's profile changed: %d samples, comments %q", len(p.Sample), p.Comments)
	}
	got := waitSeries(t, srv, 1)[0].Profile
	const dropped = n - DefaultMaxSamples
	checkHottestKept(t, got, n, DefaultMaxSamples)
	if !strings.Contains(strings.Join(got.Comments, "\n"), "4000 of 20000 samples, the coldest, were dropped") {
		t.Errorf("comments %q do not say what was trimmed", got.Comments)
	}
	if len(got.Function) != DefaultMaxSamples+2 || len(got.Location) != DefaultMaxSamples+2 {
		t.Errorf("%d functions and %d locations: the dropped samples' ones should be gone", len(got.Function), len(got.Location))
	}
	if err := s.Flush(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.TrimmedSamples != dropped || st.TrimmedProfiles != 1 {
		t.Errorf("stats %+v: want %d trimmed samples in 1 profile", st, dropped)
	}
}

// checkHottestKept checks that got holds exactly the kept hottest of the n
// samples testProfile makes (worth 1..n), with their totals.
func checkHottestKept(t *testing.T, got *profile.Profile, n, kept int) {
	t.Helper()
	if len(got.Sample) != kept {
		t.Fatalf("%d samples arrived, want %d", len(got.Sample), kept)
	}
	lo := int64(n - kept + 1)
	var want int64
	for v := lo; v <= int64(n); v++ {
		want += v
	}
	for _, s := range got.Sample {
		if s.Value[0] < lo {
			t.Fatalf("a sample worth %d arrived; only the hottest (>= %d) should", s.Value[0], lo)
		}
	}
	if g := pyroscopetest.Total(got, "samples"); g != want {
		t.Errorf("samples total %d, want %d", g, want)
	}
}

// A profile over 4 MiB uncompressed is trimmed until it fits, coldest first,
// and the server (which enforces the size) accepts it.
func TestTrimToByteLimit(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	s := newSink(t, fastConfig(srv.URL))
	const n = 12000
	p := testProfile(sink.NameCPU, n, 400)
	var raw bytes.Buffer
	if err := p.WriteUncompressed(&raw); err != nil {
		t.Fatal(err)
	}
	if raw.Len() <= DefaultMaxProfileBytes {
		t.Fatalf("test profile is %d bytes, want more than %d", raw.Len(), DefaultMaxProfileBytes)
	}
	if err := s.Enqueue(sink.Profile{Service: "big", Name: sink.NameCPU, Profile: p}); err != nil {
		t.Fatal(err)
	}
	g := waitSeries(t, srv, 1)[0]
	t.Logf("%d bytes sent as %d bytes with %d of %d samples", raw.Len(), g.RawSize, len(g.Profile.Sample), n)
	if g.RawSize > DefaultMaxProfileBytes || g.RawSize < DefaultMaxProfileBytes*8/10 {
		t.Errorf("arrived as %d bytes, want a little under %d", g.RawSize, DefaultMaxProfileBytes)
	}
	checkHottestKept(t, g.Profile, n, len(g.Profile.Sample))
}

func TestFit(t *testing.T) {
	p := testProfile(sink.NameOffCPU, 100, 0)
	enc, err := fit(p, 1000, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	q, err := profile.ParseData(enc.data)
	if err != nil {
		t.Fatal(err)
	}
	if enc.trimmed != 0 || len(q.Sample) != 100 || len(q.Comments) != 0 || sum(q, 0) != sum(p, 0) {
		t.Errorf("a profile within the limits changed: trimmed %d, %d samples, comments %q", enc.trimmed, len(q.Sample), q.Comments)
	}

	if _, err := fit(p, 1000, 10, nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("fit into 10 bytes = %v, want ErrTooLarge", err)
	}

	bad := testProfile(sink.NameCPU, 3, 0)
	bad.Sample[1].Value = []int64{1} // two sample types, one value
	if _, err := fit(bad, 0, 0, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("fit of a malformed profile = %v, want ErrInvalid", err)
	}
	nilLoc := testProfile(sink.NameCPU, 3, 0)
	nilLoc.Sample[0].Location[0] = nil
	if _, err := fit(nilLoc, 0, 0, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("fit of a profile with a nil location = %v, want ErrInvalid", err)
	}

	// The default sample type, not the last one, says what is hot.
	two := testProfile(sink.NameCPU, 10, 0)
	for i, s := range two.Sample {
		s.Value[1] = int64(100 - i) // cpu: first samples hottest
	}
	two.DefaultSampleType = "samples" // samples: last ones hottest
	enc, err = fit(two, 3, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	q, _ = profile.ParseData(enc.data)
	for _, s := range q.Sample {
		if s.Value[0] < 8 {
			t.Errorf("kept a sample with %d samples; want the 3 with the most", s.Value[0])
		}
	}
}

// Against a server that hangs, the heap does not grow with the number of
// profiles enqueued: the queue's budget bounds it.
func TestMemoryFlat(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	srv.Hang()
	cfg := fastConfig(srv.URL)
	cfg.QueueBytes = 512 << 10
	cfg.Timeout = time.Minute
	s := newSink(t, cfg)
	p := testProfile(sink.NameCPU, 400, 20) // about 9 KiB gzipped
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	enqueue := func(n int) {
		for range n {
			if err := s.Enqueue(sink.Profile{Service: "a", Name: sink.NameCPU, Profile: p}); err != nil {
				t.Fatal(err)
			}
		}
	}
	enqueue(100)
	before := heap()
	enqueue(600)
	after := heap()
	st := s.Stats()
	t.Logf("heap %d KiB after 100 profiles, %d KiB after 700; queue %d bytes; %d dropped",
		before>>10, after>>10, st.QueueBytes, st.Dropped[DropQueueFull])
	if st.QueueBytes > cfg.QueueBytes {
		t.Errorf("queue holds %d bytes, budget %d", st.QueueBytes, cfg.QueueBytes)
	}
	// 600 profiles of ~9 KiB would be ~5 MiB if kept; allow the budget twice.
	if after > before+2*uint64(cfg.QueueBytes) {
		t.Errorf("heap grew from %d to %d bytes over 600 profiles; budget %d", before, after, cfg.QueueBytes)
	}
}

// BenchmarkEnqueue measures Enqueue (checks, trim, encode, queue) of a
// profile within the limits and of one over them, each against plain
// profile.Write of the same profile in the same run.
func BenchmarkEnqueue(b *testing.B) {
	for _, bc := range []struct {
		name string
		n    int
	}{{"2k-stacks", 2000}, {"20k-stacks-trimmed", 20000}} {
		b.Run(bc.name, func(b *testing.B) {
			p := testProfile(sink.NameCPU, bc.n, 20)
			// The baseline, timed by hand: testing.Benchmark cannot nest.
			const rounds = 20
			start := time.Now()
			for range rounds {
				if err := p.Write(io.Discard); err != nil {
					b.Fatal(err)
				}
			}
			base := float64(time.Since(start).Nanoseconds()) / rounds
			cfg := Config{URL: "http://127.0.0.1:1", QueueBytes: 8 << 20, MinBackoff: time.Hour, MaxBackoff: time.Hour}
			s, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
				defer cancel()
				_ = s.Close(ctx) // nothing can be delivered: the port is closed
			}()
			for b.Loop() {
				if err := s.Enqueue(sink.Profile{Service: "a", Name: sink.NameCPU, Profile: p}); err != nil {
					b.Fatal(err)
				}
			}
			per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(per/base, "x-pprof-Write")
		})
	}
}

// Per-thread sample labels can be dropped; the samples they told apart are
// merged, the totals kept, and the caller's profile is unchanged.
func TestDropSampleLabels(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	cfg := fastConfig(srv.URL)
	cfg.DropSampleLabels = []string{"tid", "thread"}
	s := newSink(t, cfg)
	p := testProfile(sink.NameOffCPU, 10, 0)
	// Three threads per stack: 30 samples, 10 stacks.
	var all []*profile.Sample
	for _, smp := range p.Sample {
		for tid := range int64(3) {
			all = append(all, &profile.Sample{
				Location: smp.Location,
				Value:    []int64{smp.Value[0]},
				Label:    map[string][]string{"thread": {"worker-" + string(rune('a'+tid))}, "comm": {"svc"}},
				NumLabel: map[string][]int64{"pid": {7}, "tid": {100 + tid}},
			})
		}
	}
	p.Sample = all
	want := sum(p, 0)
	if err := s.Enqueue(sink.Profile{Service: "svc", Name: sink.NameOffCPU, Profile: p}); err != nil {
		t.Fatal(err)
	}
	got := waitSeries(t, srv, 1)[0].Profile
	if len(got.Sample) != 10 || sum(got, 0) != want {
		t.Errorf("%d samples worth %d arrived, want 10 worth %d", len(got.Sample), sum(got, 0), want)
	}
	for _, smp := range got.Sample {
		if smp.Label["thread"] != nil || smp.NumLabel["tid"] != nil || smp.Label["comm"][0] != "svc" || smp.NumLabel["pid"][0] != 7 {
			t.Fatalf("sample labels %v %v: want comm and pid only", smp.Label, smp.NumLabel)
		}
	}
	if len(p.Sample) != 30 || p.Sample[0].Label["thread"] == nil || p.Sample[0].Value[0] != 1000 {
		t.Error("the caller's profile changed")
	}
}
