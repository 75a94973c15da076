package pyroscope

// Sending: workers take batches from the queue (one profile at a time as a
// probe while the server fails), retry with bounded backoff, and finish them.

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"strconv"
	"time"

	"connectrpc.com/connect"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
)

func (s *Sink) worker() {
	defer s.wg.Done()
	for {
		b, ok := s.next()
		if !ok {
			return
		}
		r := s.attempt(b.ctx, b.items)
		s.finish(b, r)
	}
}

// batch is one attempt: the profiles it carries, in one push request.
type batch struct {
	items  []*item
	ctx    context.Context
	cancel context.CancelFunc
	round  int  // the round of attempts it belongs to: only its first failure backs off
	probe  bool // sent while failing: the one attempt that tells whether the server is back
}

// next waits for an attempt to make. While the server answers, that is the
// oldest profiles not in flight, up to MaxBatchProfiles and MaxBatchBytes,
// in one request (a profile once refused in a batch goes alone). While it
// fails, it is a probe: one profile, one attempt at a time, at most
// MaxBackoff after the last, so that the queue drains in batches as soon as
// the server is back instead of after a long sleep.
func (s *Sink) next() (*batch, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.stopped {
			return nil, false
		}
		now := s.cfg.now()
		s.expireLocked(now)
		wait := s.retryAt.Sub(now)
		if wait <= 0 && !s.probing {
			if b := s.takeLocked(); b != nil {
				return b, true
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ch:
			case <-t.C:
			}
			t.Stop()
		} else {
			<-ch
		}
		s.mu.Lock()
	}
}

// takeLocked marks the next attempt's profiles in flight and returns it, or
// nil if every profile is in flight.
func (s *Sink) takeLocked() *batch {
	b := &batch{round: s.round, probe: s.failures > 0}
	timeout := s.cfg.Timeout
	if b.probe {
		timeout = min(timeout, s.cfg.MaxBackoff+5*time.Second)
	}
	var size int64
	for _, it := range s.items {
		if it.inflight {
			continue
		}
		if len(b.items) > 0 && (it.solo || b.items[0].solo || b.probe || s.tr != nil ||
			len(b.items) >= s.cfg.MaxBatchProfiles || size+int64(len(it.data)) > s.cfg.MaxBatchBytes) {
			break
		}
		b.items = append(b.items, it)
		size += int64(len(it.data))
	}
	if len(b.items) == 0 {
		return nil
	}
	b.ctx, b.cancel = context.WithTimeout(context.Background(), timeout)
	for _, it := range b.items {
		it.inflight, it.cancel = true, b.cancel
	}
	s.probing = b.probe
	return b
}

// expireLocked drops the queued items the server would reject as too old.
func (s *Sink) expireLocked(now time.Time) {
	n := 0
	for i := 0; i < len(s.items); {
		it := s.items[i]
		if !it.inflight && now.Sub(it.stamp) > s.cfg.MaxAge {
			s.removeLocked(it)
			s.m.drop(DropTooOld)
			n++
			continue
		}
		i++
	}
	if n > 0 {
		s.warnDropLocked("profiles older than the server accepts dropped", n)
		s.changedLocked()
	}
}

// result is the outcome of one upload attempt.
type result struct {
	status     int // HTTP status, 0 if no response
	retryAfter time.Duration
	err        error
}

func (s *Sink) attempt(ctx context.Context, items []*item) result {
	if s.tr != nil {
		start := time.Now()
		r := s.tr.Send(ctx, &Conn{Client: s.cfg.HTTPClient, auth: &s.cfg.Auth, now: s.cfg.now}, items[0].data)
		s.m.attempt(time.Since(start).Seconds())
		return result{status: r.Status, retryAfter: r.RetryAfter, err: r.Err}
	}
	series := make([]*pushv1.RawProfileSeries, len(items))
	for i, it := range items {
		series[i] = &pushv1.RawProfileSeries{Labels: it.labels, Samples: []*pushv1.RawSample{{RawProfile: it.data, ID: it.id}}}
	}
	req := connect.NewRequest(&pushv1.PushRequest{Series: series})
	var resp response
	ctx = context.WithValue(ctx, responseKey{}, &resp)
	start := time.Now()
	_, err := s.client.Push(ctx, req)
	s.m.attempt(time.Since(start).Seconds())
	return result{status: resp.status, retryAfter: resp.retryAfter, err: err}
}

// retryable reports whether an attempt's failure may pass: no answer (a
// transport error or a timeout), 5xx, 408 or 429. Any other answer would be
// the same next time.
func (r *result) retryable() bool {
	switch {
	case r.status == 0, r.status >= 500, r.status == http.StatusRequestTimeout, r.status == http.StatusTooManyRequests:
		return true
	case r.status >= 200 && r.status < 300:
		return true // an unreadable success: the answer was cut
	}
	return false
}

func (s *Sink) finish(b *batch, r result) {
	b.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.changedLocked()
	if b.probe {
		s.probing = false
	}
	var live []*item
	for _, it := range b.items {
		it.inflight = false
		if !it.gone { // evicted or shut down while in flight, and counted then
			live = append(live, it)
		}
	}
	if r.err == nil {
		for _, it := range live {
			s.removeLocked(it)
			s.m.send(len(it.data))
		}
		s.failures, s.retryAt = 0, time.Time{}
		s.round++
		return
	}
	if len(live) < len(b.items) && errors.Is(r.err, context.Canceled) {
		return // cancelled because a profile of the batch was evicted: the rest go again, no backoff
	}
	code := "transport"
	if r.status != 0 {
		code = strconv.Itoa(r.status)
	}
	s.m.fail(code)
	if !r.retryable() {
		if len(b.items) > 1 {
			// One of them may be what the server refuses: try each alone.
			for _, it := range live {
				it.solo = true
			}
			s.cfg.Logger.Debug("pyroscope: server refused a batch; sending its profiles one by one", "profiles", len(b.items), "status", r.status, "err", r.err)
			return
		}
		for _, it := range live {
			s.removeLocked(it)
			s.m.drop(DropRejected)
			s.cfg.Logger.Warn("pyroscope: server refused a profile", "service", it.service, "name", it.name,
				"status", r.status, "err", r.err)
		}
		return
	}
	s.cfg.Logger.Debug("pyroscope: upload failed, will retry", "profiles", len(b.items), "status", r.status, "err", r.err)
	if b.round != s.round {
		return // another attempt of the same round already backed off, or Close reset it
	}
	s.failures++
	s.round++
	d := backoff(s.cfg.MinBackoff, s.cfg.MaxBackoff, s.failures)
	if r.retryAfter > d {
		d = min(r.retryAfter, s.cfg.MaxBackoff)
	}
	s.retryAt = s.cfg.now().Add(d)
}

// backoff returns the wait after the n-th failed round: min doubled n-1
// times, at most max, plus up to a quarter of that at random so that many
// agents do not retry in step.
func backoff(minD, maxD time.Duration, n int) time.Duration {
	d := minD
	for i := 1; i < n && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	var b [2]byte
	_, _ = rand.Read(b[:])
	jitter := time.Duration(uint64(d/4) * uint64(uint16(b[0])<<8|uint16(b[1])) >> 16)
	return d + jitter
}
