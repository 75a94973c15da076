package agent

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// health is what /healthz reports: when the maps were last drained, how many
// drains were late, and which stage is at work on which interval since when.
type health struct {
	mu        sync.Mutex
	lastDrain time.Time
	late      uint64
	maxGap    time.Duration // the longest time between two drains
	stages    map[string]stageState
}

type stageState struct {
	interval time.Time // the end of the interval being worked on
	since    time.Time
}

// drained records a drain at now and returns how late it was (0 if on time).
func (h *health) drained(now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var late time.Duration
	if !h.lastDrain.IsZero() {
		d := now.Sub(h.lastDrain)
		h.maxGap = max(h.maxGap, d)
		if d > lateDrain {
			late = d
			h.late++
		}
	}
	h.lastDrain = now
	return late
}

func (h *health) busy(stage string, interval time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stages == nil {
		h.stages = map[string]stageState{}
	}
	h.stages[stage] = stageState{interval: interval, since: time.Now()}
}

func (h *health) idle(stage string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.stages, stage)
}

// busyWith names the stage that has been at work longest, and for how long.
func (h *health) busyWith() (string, time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var name string
	var d time.Duration
	for _, k := range slices.Sorted(maps.Keys(h.stages)) {
		if s := time.Since(h.stages[k].since); s > d {
			name, d = k, s
		}
	}
	return name, d
}

// lateDrains is how many drains came later than lateDrain after the one
// before.
func (h *health) lateDrains() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.late
}

// longestGap is the longest time between two drains so far.
func (h *health) longestGap() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.maxGap
}

// report returns whether the agent is healthy and the lines of /healthz:
// unhealthy when the maps were not drained for 5 drain periods, or a stage
// has been at one interval for more than 3 intervals (its intervals are
// being dropped); each late thing is named with how late it is.
func (h *health) report(interval time.Duration, drops map[string]uint64) (bool, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ok := true
	var lines []string
	since := time.Since(h.lastDrain)
	if since > 5*agentDrainEvery {
		ok = false
		lines = append(lines, fmt.Sprintf("late: kernel maps not drained for %v (every %v expected)", since.Round(time.Millisecond), agentDrainEvery))
	}
	for _, k := range slices.Sorted(maps.Keys(h.stages)) {
		s := h.stages[k]
		d := time.Since(s.since)
		line := fmt.Sprintf("%s: at work on the interval ending %s for %v", k, s.interval.Format(time.TimeOnly), d.Round(time.Millisecond))
		if d > 3*interval {
			ok = false
			line = "late: " + line + fmt.Sprintf(" (more than 3 intervals of %v: later intervals are dropped)", interval)
		}
		lines = append(lines, line)
	}
	lines = append(lines, fmt.Sprintf("drains: last %v ago, %d late, longest gap %v", since.Round(time.Millisecond), h.late, h.maxGap.Round(time.Millisecond)))
	for _, k := range slices.Sorted(maps.Keys(drops)) {
		lines = append(lines, fmt.Sprintf("intervals dropped at %s: %d", k, drops[k]))
	}
	if ok {
		lines = append([]string{"ok"}, lines...)
	}
	return ok, lines
}

// dropCounts counts intervals dropped by stage.
type dropCounts struct {
	mu sync.Mutex
	n  map[string]uint64
}

func (d *dropCounts) add(stage string) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == nil {
		d.n = map[string]uint64{}
	}
	d.n[stage]++
	return d.n[stage]
}

func (d *dropCounts) get(stage string) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[stage]
}

func (d *dropCounts) all() map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.n)
}

// Healthy reports whether the agent is on time: the kernel maps drained
// recently, no stage stuck on one interval.
func (a *Agent) Healthy() bool {
	ok, _ := a.health.report(a.cfg.Interval, a.drops.all())
	return ok
}

// Health returns /healthz's lines.
func (a *Agent) Health() (bool, string) {
	ok, lines := a.health.report(a.cfg.Interval, a.drops.all())
	return ok, strings.Join(lines, "\n") + "\n"
}
