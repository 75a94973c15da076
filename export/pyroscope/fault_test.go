package pyroscope

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emberprof/ember/export/sink"
	"github.com/emberprof/ember/internal/testutil/pyroscopetest"
)

func seqProfile(i int) sink.Profile {
	return sink.Profile{Service: "svc", Name: sink.NameCPU, Labels: map[string]string{"seq": strconv.Itoa(i)},
		Profile: testProfile(sink.NameCPU, 20, 0)}
}

// The server answers 503 for a while, then recovers: every profile arrives,
// and the waits between the failed attempts grow.
func TestRetryUntilRecovered(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	const failures = 5
	srv.FailNext(failures, http.StatusServiceUnavailable)
	cfg := fastConfig(srv.URL)
	cfg.MinBackoff, cfg.MaxBackoff = 25*time.Millisecond, 10*time.Second
	s := newSink(t, cfg)
	const n = 6
	for i := range n {
		if err := s.Enqueue(seqProfile(i)); err != nil {
			t.Fatal(err)
		}
	}
	got := waitSeries(t, srv, n)
	seen := map[string]bool{}
	for _, g := range got {
		seen[g.Labels["seq"]] = true
	}
	if len(seen) != n {
		t.Errorf("received seqs %v, want %d distinct", seen, n)
	}
	reqs := srv.Requests()
	for i, r := range reqs[:failures] {
		if r.Status != http.StatusServiceUnavailable {
			t.Fatalf("request %d answered %d, want the scripted 503", i, r.Status)
		}
	}
	// The waits between attempts 1..failures+1 are at least 25, 50, 100,
	// 200, 400 ms: a timer never fires early, so these lower bounds hold on
	// any machine, and together they show the wait doubling.
	var waits []time.Duration
	for i := 1; i <= failures; i++ {
		waits = append(waits, reqs[i].Start.Sub(reqs[i-1].End))
	}
	t.Logf("waits between attempts: %v", waits)
	for i, w := range waits {
		if least := cfg.MinBackoff << i; w < least {
			t.Errorf("wait %d is %v, want at least %v: %v", i, w, least, waits)
		}
	}
	if err := s.Flush(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Sent != n || st.FailedAttempts != failures || st.DroppedTotal() != 0 {
		t.Errorf("stats %+v: want %d sent, %d failed attempts, none dropped", st, n, failures)
	}
}

// 5xx, 408 and 429 are retried; a transport error too.
func TestRetryableStatuses(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	statuses := []int{500, 502, 504, http.StatusRequestTimeout, http.StatusTooManyRequests}
	for _, st := range statuses {
		srv.FailNext(1, st)
	}
	s := newSink(t, fastConfig(srv.URL))
	if err := s.Enqueue(seqProfile(0)); err != nil {
		t.Fatal(err)
	}
	waitSeries(t, srv, 1)
	if err := s.Flush(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Sent != 1 || st.FailedAttempts != uint64(len(statuses)) {
		t.Errorf("stats %+v: want 1 sent after %d failures", st, len(statuses))
	}
}

// A 400, scripted or from the server's validation, and a 401 are final:
// the profile is dropped, counted, and sent once.
func TestFinalAnswersNotRetried(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{TenantID: "t1"})
	cfg := fastConfig(srv.URL)
	cfg.Auth.TenantID = "t1"
	cfg.MaxBatchProfiles = 1 // one request per profile (TestRefusedBatchSplit covers batches)
	s := newSink(t, cfg)

	srv.FailNext(1, http.StatusBadRequest)
	if err := s.Enqueue(seqProfile(0)); err != nil {
		t.Fatal(err)
	}
	// The server refuses a sample type with a '-' (Pyroscope does).
	bad := testProfile(sink.NameOffCPU, 3, 0)
	bad.SampleType[0].Type = "off-cpu"
	if err := s.Enqueue(sink.Profile{Service: "svc", Name: sink.NameOffCPU, Profile: bad, Labels: map[string]string{"seq": "1"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(seqProfile(2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// A wrong tenant: 401 from the server.
	cfg.Auth.TenantID = "t2"
	wrong := newSink(t, cfg)
	if err := wrong.Enqueue(seqProfile(3)); err != nil {
		t.Fatal(err)
	}
	if err := wrong.Flush(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}

	reqs := srv.Requests()
	var codes []int
	for _, r := range reqs {
		codes = append(codes, r.Status)
	}
	want := []int{400, 400, 200, 401}
	if len(codes) != len(want) {
		t.Fatalf("answers %v, want %v (one request per profile, no retries)", codes, want)
	}
	for i := range want {
		if codes[i] != want[i] {
			t.Errorf("answers %v, want %v", codes, want)
			break
		}
	}
	if got := srv.Series(); len(got) != 1 || got[0].Labels["seq"] != "2" {
		t.Errorf("server kept %v, want only seq 2", got)
	}
	if st := s.Stats(); st.Dropped[DropRejected] != 2 || st.Sent != 1 || st.FailedAttempts != 2 {
		t.Errorf("stats %+v: want 2 rejected, 1 sent", st)
	}
	if st := wrong.Stats(); st.Dropped[DropRejected] != 1 || st.Attempts != 1 {
		t.Errorf("wrong tenant stats %+v: want 1 rejected after 1 attempt", st)
	}
}

// The server hangs: Enqueue keeps returning, the queue stays within its
// budget by dropping the oldest profiles (counted), and once the server
// answers again the newest profiles arrive.
func TestHangingServerBoundedQueue(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	srv.Hang()
	probe, err := fit(seqProfile(0).Profile, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(probe.data))
	budget := 8*size + size/2 // room for 8 profiles
	cfg := fastConfig(srv.URL)
	cfg.QueueBytes = budget
	cfg.Timeout = time.Minute // only eviction ends a hung attempt
	cfg.Concurrency = 2
	s := newSink(t, cfg)

	const n = 200
	done := make(chan struct{})
	var maxQueue atomic.Int64
	go func() {
		defer close(done)
		for i := range n {
			if err := s.Enqueue(seqProfile(i)); err != nil {
				t.Error(err)
				return
			}
			if q := s.Stats().QueueBytes; q > maxQueue.Load() {
				maxQueue.Store(q)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Enqueue blocked while the server hung")
	}
	st := s.Stats()
	t.Logf("budget %d bytes (%d per profile), peak queue %d, stats %+v", budget, size, maxQueue.Load(), st)
	if maxQueue.Load() > budget {
		t.Errorf("queue reached %d bytes, budget %d", maxQueue.Load(), budget)
	}
	if st.Enqueued != n || st.QueueProfiles != 8 || st.Dropped[DropQueueFull] != n-8 {
		t.Errorf("stats %+v: want %d enqueued, 8 queued, %d dropped as queue_full", st, n, n-8)
	}

	srv.Release()
	if err := s.Close(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// The 8 newest arrive. A request evicted (cancelled) just before the
	// release may still reach the server, which had it whole: delivery is
	// at least once, so up to Concurrency older ones may arrive too.
	newest := map[int]bool{}
	extra := 0
	for _, g := range srv.Series() {
		if seq, _ := strconv.Atoi(g.Labels["seq"]); seq >= n-8 {
			newest[seq] = true
		} else {
			extra++
		}
	}
	if len(newest) != 8 || extra > cfg.Concurrency {
		t.Errorf("server got %d of the 8 newest and %d older profiles; want all 8 and at most %d older",
			len(newest), extra, cfg.Concurrency)
	}
}

// Close delivers everything queued before its deadline.
func TestCloseDelivers(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	cfg := fastConfig(srv.URL)
	cfg.Concurrency = 3
	s := newSink(t, cfg)
	const n = 40
	for i := range n {
		if err := s.Enqueue(seqProfile(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := len(srv.Series()); got != n {
		t.Errorf("server got %d profiles, want %d", got, n)
	}
	if err := s.Enqueue(seqProfile(n)); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// Close does not sit out a long backoff: it tries again at once.
func TestCloseCutsBackoff(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	srv.FailNext(1, http.StatusServiceUnavailable)
	cfg := fastConfig(srv.URL)
	cfg.MinBackoff, cfg.MaxBackoff = time.Hour, time.Hour
	s := newSink(t, cfg)
	if err := s.Enqueue(seqProfile(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.WaitRequests(ctxTimeout(t, 10*time.Second), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := len(srv.Series()); got != 1 {
		t.Errorf("server got %d profiles, want 1", got)
	}
}

// At its deadline Close gives up on a hung server, drops and counts what is
// left, and says so.
func TestCloseDeadline(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	srv.Hang()
	s := newSink(t, fastConfig(srv.URL))
	for i := range 3 {
		if err := s.Enqueue(seqProfile(i)); err != nil {
			t.Fatal(err)
		}
	}
	err := s.Close(ctxTimeout(t, 200*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want a deadline error", err)
	}
	if st := s.Stats(); st.Dropped[DropShutdown] != 3 || st.QueueBytes != 0 {
		t.Errorf("stats %+v: want 3 dropped at shutdown, queue empty", st)
	}
}

// A profile older than MaxAge is refused, and a queued one that ages past it
// while the server fails is dropped: the server would reject both.
func TestTooOld(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	var skew atomic.Int64
	cfg := fastConfig(srv.URL)
	cfg.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	s := newSink(t, cfg)

	old := testProfile(sink.NameCPU, 3, 0)
	old.TimeNanos = time.Now().Add(-2 * time.Hour).UnixNano()
	if err := s.Enqueue(sink.Profile{Service: "a", Name: sink.NameCPU, Profile: old}); !errors.Is(err, ErrTooOld) {
		t.Fatalf("Enqueue of a 2h old profile = %v, want ErrTooOld", err)
	}

	srv.FailNext(1000, http.StatusServiceUnavailable)
	if err := s.Enqueue(seqProfile(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.WaitRequests(ctxTimeout(t, 10*time.Second), 2); err != nil {
		t.Fatal(err)
	}
	skew.Store(int64(2 * time.Hour))
	if err := s.Flush(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Dropped[DropTooOld] != 2 || st.Sent != 0 {
		t.Errorf("stats %+v: want 2 too old, none sent", st)
	}
}

func TestBackoff(t *testing.T) {
	minD, maxD := 100*time.Millisecond, 2*time.Second
	prev := time.Duration(0)
	for n := 1; n <= 10; n++ {
		d := backoff(minD, maxD, n)
		base := min(minD<<(n-1), maxD)
		if d < base || d > base+base/4 {
			t.Errorf("backoff(%d) = %v, want in [%v, %v]", n, d, base, base+base/4)
		}
		if base < maxD && d <= prev {
			t.Errorf("backoff(%d) = %v, not above backoff(%d) = %v", n, d, n-1, prev)
		}
		prev = d
	}
	now := time.Now()
	for v, want := range map[string]time.Duration{"": 0, "3": 3 * time.Second, "x": 0, "-1": 0,
		now.Add(10 * time.Second).UTC().Format(http.TimeFormat): 9 * time.Second} {
		if got := parseRetryAfter(v, now); got < want || got > want+time.Second {
			t.Errorf("parseRetryAfter(%q) = %v, want about %v", v, got, want)
		}
	}
}

// Many goroutines enqueue while the server fails now and then: every
// profile is accounted for, sent or dropped for a reason, and the server
// holds exactly the ones counted as sent.
func TestConcurrentAccounting(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	srv.FailNext(10, http.StatusServiceUnavailable)
	srv.FailNext(3, http.StatusBadRequest)
	cfg := fastConfig(srv.URL)
	cfg.Concurrency = 3
	s := newSink(t, cfg)
	const goroutines, each = 8, 25
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if err := s.Enqueue(seqProfile(g*each + i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(ctxTimeout(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Enqueued != goroutines*each || st.Sent+st.DroppedTotal() != st.Enqueued || st.Dropped[DropRejected] != 3 {
		t.Errorf("stats %+v: want %d enqueued = sent + dropped, 3 rejected", st, goroutines*each)
	}
	if got := uint64(len(srv.Series())); got != st.Sent {
		t.Errorf("server holds %d profiles, the sink counted %d sent", got, st.Sent)
	}
}

// While the server fails, the sink sends one profile at a time (a probe),
// at most MaxBackoff apart; once a probe succeeds the rest of the queue goes
// in push requests of many series, so a backlog clears in a few requests.
func TestProbeThenBatches(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	const failures = 6
	srv.FailNext(failures, http.StatusServiceUnavailable)
	cfg := fastConfig(srv.URL)
	cfg.Concurrency = 2
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 100*time.Millisecond
	cfg.MaxBatchProfiles = 16
	s := newSink(t, cfg)
	const n = 40
	for i := range n {
		if err := s.Enqueue(seqProfile(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitSeries(t, srv, n)
	if err := s.Flush(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	var sizes []int
	for _, r := range reqs {
		sizes = append(sizes, r.Series)
	}
	t.Logf("series per request: %v", sizes)
	// The first request may carry a batch (the sink did not know the server
	// was failing); every later failure is a probe of one profile.
	for i, r := range reqs[1:failures] {
		if r.Status != http.StatusServiceUnavailable {
			t.Fatalf("request %d answered %d, want the scripted 503", i+1, r.Status)
		}
	}
	for i := 1; i < failures; i++ {
		if reqs[i].Start.Before(reqs[i-1].End) {
			t.Errorf("requests %d and %d overlap while the server fails: one probe at a time", i-1, i)
		}
		if w := reqs[i].Start.Sub(reqs[i-1].End); w > time.Second {
			t.Errorf("wait of %v before request %d: MaxBackoff is %v", w, i, cfg.MaxBackoff)
		}
	}
	if ok := len(reqs) - failures; ok > n/cfg.MaxBatchProfiles+3 {
		t.Errorf("%d successful requests for %d profiles: want batches of up to %d", ok, n, cfg.MaxBatchProfiles)
	}
	if st := s.Stats(); st.Sent != n || st.DroppedTotal() != 0 {
		t.Errorf("stats %+v: want %d sent, none dropped", st, n)
	}
}

// A batch the server refuses (400) is split: each profile goes alone, and
// only the one the server refuses is dropped.
func TestRefusedBatchSplit(t *testing.T) {
	srv := pyroscopetest.New(t, pyroscopetest.Options{})
	srv.FailNext(1, http.StatusBadRequest)
	cfg := fastConfig(srv.URL)
	s := newSink(t, cfg)
	for i := range 5 {
		if err := s.Enqueue(seqProfile(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	t.Logf("requests %d, stats %+v", len(srv.Requests()), st)
	// The scripted 400 answers the first request: a batch of the profiles
	// queued by then (split and resent) or a single one (dropped).
	if st.Sent+st.Dropped[DropRejected] != 5 || st.Dropped[DropRejected] > 1 {
		t.Errorf("stats %+v: want all 5 sent but at most the one refused alone", st)
	}
}
