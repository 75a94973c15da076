package pyroscope

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/sink"
	"github.com/emberprof/ember/internal/testutil/pyroscopetest"
)

const testHz = 99

// testProfile builds a profile of the given kind (sink.NameCPU or
// sink.NameOffCPU) with n distinct stacks, the i-th (from 0) worth i+1
// units, over a pool of functions in one mapping. nameLen pads function
// names, to make large profiles.
func testProfile(kind string, n, nameLen int) *profile.Profile {
	m := &profile.Mapping{ID: 1, Start: 0x400000, Limit: 0x800000, File: "/usr/bin/workload", BuildID: "abcdef0123456789"}
	p := &profile.Profile{
		Mapping:       []*profile.Mapping{m},
		TimeNanos:     time.Now().Add(-10 * time.Second).UnixNano(),
		DurationNanos: int64(10 * time.Second),
	}
	period := int64(1_000_000_000 / testHz)
	if kind == sink.NameCPU {
		p.SampleType = []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}}
		p.PeriodType, p.Period = &profile.ValueType{Type: "cpu", Unit: "nanoseconds"}, period
	} else {
		p.SampleType = []*profile.ValueType{{Type: "offcpu", Unit: "nanoseconds"}}
		p.PeriodType, p.Period = &profile.ValueType{Type: "offcpu", Unit: "nanoseconds"}, 1
	}
	pad := make([]byte, nameLen)
	for i := range pad {
		pad[i] = 'x'
	}
	// Stack i is leaf f(i) under a root chain shared by all: main, run.
	root := []*profile.Location{}
	for j, name := range []string{"main", "run"} {
		f := &profile.Function{ID: uint64(j + 1), Name: name, SystemName: name, Filename: "main.c"}
		l := &profile.Location{ID: uint64(j + 1), Mapping: m, Address: 0x401000 + uint64(j)*16, Line: []profile.Line{{Function: f, Line: int64(10 + j)}}}
		p.Function = append(p.Function, f)
		p.Location = append(p.Location, l)
		root = append([]*profile.Location{l}, root...)
	}
	for i := range n {
		id := uint64(len(p.Function) + 1)
		name := fmt.Sprintf("leaf_%d_%s", i, pad)
		f := &profile.Function{ID: id, Name: name, SystemName: name, Filename: "leaf.c"}
		l := &profile.Location{ID: uint64(len(p.Location) + 1), Mapping: m, Address: 0x402000 + uint64(i)*16, Line: []profile.Line{{Function: f, Line: int64(i)}}}
		p.Function = append(p.Function, f)
		p.Location = append(p.Location, l)
		v := int64(i + 1)
		s := &profile.Sample{Location: append([]*profile.Location{l}, root...)}
		if kind == sink.NameCPU {
			s.Value = []int64{v, v * period}
		} else {
			s.Value = []int64{v * 1000}
		}
		s.NumLabel = map[string][]int64{"pid": {4242}}
		p.Sample = append(p.Sample, s)
	}
	return p
}

// sum returns the sum of the values of sample type i in p.
func sum(p *profile.Profile, i int) int64 {
	var t int64
	for _, s := range p.Sample {
		t += s.Value[i]
	}
	return t
}

// fastConfig returns a Config with short timings, for a test server.
func fastConfig(url string) Config {
	return Config{
		URL:         url,
		MinBackoff:  20 * time.Millisecond,
		MaxBackoff:  200 * time.Millisecond,
		Timeout:     5 * time.Second,
		Concurrency: 1,
	}
}

func newSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func waitSeries(t *testing.T, srv *pyroscopetest.Server, n int) []pyroscopetest.Series {
	t.Helper()
	got, err := srv.WaitSeries(ctxTimeout(t, 10*time.Second), n)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// logBuffer is a slog handler target safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitStats polls s until cond holds of its stats, or fails the test after
// 10 seconds.
func waitStats(t *testing.T, s *Sink, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: condition not met in 10s", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
