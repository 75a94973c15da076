package main

import (
	"bufio"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/internal/testutil"
)

// wakerShare sums the off-CPU time of thread tid in stacks whose blocked part
// (above the "[woken by" frame) has blockedFn, and of that the time whose
// waker part has wakerFn, and the time whose cause label is cause.
func wakerShare(p *profile.Profile, tid int64, blockedFn, wakerFn, cause string) (total, woken, caused int64) {
	idx := testutil.SampleIndex(p, "offcpu")
	for _, s := range p.Sample {
		if v := s.NumLabel["tid"]; len(v) != 1 || v[0] != tid {
			continue
		}
		frames := testutil.Frames(s)
		w := slices.IndexFunc(frames, func(f string) bool { return strings.HasPrefix(f, "[woken by ") })
		blocked, waker := frames, []string(nil)
		if w >= 0 {
			blocked, waker = frames[:w], frames[w+1:]
		}
		if !slices.Contains(blocked, blockedFn) {
			continue
		}
		total += s.Value[idx]
		if slices.Contains(waker, wakerFn) {
			woken += s.Value[idx]
		}
		if c := s.Label["cause"]; len(c) == 1 && c[0] == cause {
			caused += s.Value[idx]
		}
	}
	return total, woken, caused
}

// With --wakers, a block's waker sits beneath it: the consumer blocked in
// consume() reading a pipe is woken by the producer's produce_item(), the
// mutex waiter in take_lock() by the holder's release_lock(); and the cause
// label says pipe and lock. Every method.
func TestWakers(t *testing.T) {
	testutil.RequireRoot(t)
	for _, method := range offCPUMethods {
		t.Run(method, func(t *testing.T) {
			dir := t.TempDir()
			bin := testutil.BuildOffCPU(t, dir, "wakeup")
			stdout, p := recordCommand(t, dir, []string{"--mode", "offcpu", "--wakers", "--offcpu-method", method}, bin, "5")
			tids := map[string]int64{}
			sc := bufio.NewScanner(strings.NewReader(stdout))
			for sc.Scan() {
				if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "thread" {
					tids[f[1]], _ = strconv.ParseInt(f[2], 10, 64)
				}
			}
			for _, c := range []struct{ thread, blocked, waker, cause string }{
				{"consumer", "consume", "produce_item", "pipe"},
				{"waiter", "take_lock", "release_lock", "lock"},
			} {
				tid, ok := tids[c.thread]
				if !ok {
					t.Fatalf("workload printed no tid for %s:\n%s", c.thread, stdout)
				}
				total, woken, caused := wakerShare(p, tid, c.blocked, c.waker, c.cause)
				t.Logf("%s: %.3fs off CPU in %s; %.1f%% of it woken by %s, %.1f%% of it cause=%s", c.thread,
					float64(total)/1e9, c.blocked, 100*float64(woken)/float64(total), c.waker,
					100*float64(caused)/float64(total), c.cause)
				if total < 1e9 {
					t.Errorf("%s: only %.3fs off CPU in %s", c.thread, float64(total)/1e9, c.blocked)
				}
				if float64(woken) < 0.95*float64(total) {
					t.Errorf("%s: %.1f%% of its time in %s has %s beneath [woken by ...]; want 95%%", c.thread,
						100*float64(woken)/float64(total), c.blocked, c.waker)
				}
				if float64(caused) < 0.95*float64(total) {
					t.Errorf("%s: %.1f%% of its time in %s has cause=%s; want 95%%", c.thread,
						100*float64(caused)/float64(total), c.blocked, c.cause)
				}
			}
		})
	}
}
