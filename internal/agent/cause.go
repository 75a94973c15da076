package agent

import (
	"maps"
	"reflect"
	"strings"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/pprof"
)

// Causes classify an off-CPU block by the kernel function it waited in: the
// first frame, leaf first, whose name starts with one of a cause's
// prefixes decides, so a page fault that waits for the disk is "disk" and a
// poll that sleeps with a timeout is "poll". Generic waits (schedule,
// schedule_timeout, schedule_hrtimeout) name no cause: the caller does.
// Runnable (preempted) blocks are "preempted" whatever their stack; a block
// no prefix matches is "other". Extend by adding prefixes or rows.
var Causes = []struct {
	Cause    string
	Prefixes []string
}{
	{"lock", []string{"futex_wait", "__futex_wait", "futex_do_wait", "futex_lock_pi", "__mutex_lock", "mutex_lock", "rwsem_down_", "rt_mutex_slowlock", "__rt_mutex_slowlock"}},
	{"poll", []string{"ep_poll", "do_epoll_wait", "do_poll", "do_sys_poll", "do_select", "core_sys_select"}},
	{"net", []string{"sk_wait_data", "tcp_recvmsg", "tcp_sendmsg", "inet_csk_accept", "inet_accept", "udp_recvmsg", "__skb_wait_for_more_packets", "sk_stream_wait_memory", "unix_stream_read_generic", "unix_stream_data_wait", "unix_dgram_recvmsg", "sock_recvmsg", "sock_sendmsg", "__sys_accept", "netlink_recvmsg"}},
	{"pipe", []string{"pipe_read", "pipe_write", "anon_pipe_read", "anon_pipe_write", "pipe_wait", "wait_for_partner"}},
	{"disk", []string{"io_schedule", "folio_wait", "__folio_lock", "wait_on_page", "__lock_page", "bit_wait_io", "submit_bio_wait", "blk_", "jbd2_"}},
	{"sleep", []string{"do_nanosleep", "hrtimer_nanosleep", "common_nsleep", "clock_nanosleep", "msleep"}},
	{"page-fault", []string{"handle_mm_fault", "do_user_addr_fault", "exc_page_fault", "__do_page_fault", "do_page_fault", "do_mem_abort"}},
}

// classify returns the cause of a block whose kernel frames, leaf first,
// are funcs.
func classify(funcs []string) string {
	for _, fn := range funcs {
		for _, c := range Causes {
			for _, p := range c.Prefixes {
				if strings.HasPrefix(fn, p) {
					return c.Cause
				}
			}
		}
	}
	return "other"
}

// timerWakers name the kernel functions through which a timer wakes a
// sleeper: the "waker" current then is whatever the interrupt interrupted.
var timerWakers = []string{"hrtimer_wakeup", "process_timeout", "call_timer_fn", "__hrtimer_run_queues"}

// tracingFrame reports whether a waker frame is the tracing machinery
// between try_to_wake_up and Ember's program, which says nothing of the
// waker.
func tracingFrame(fn string) bool {
	for _, p := range []string{"bpf_", "__bpf_", "__traceiter_", "trace_", "perf_trace_", "__perf_"} {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// annotateOffCPU finishes a symbolized off-CPU or wall profile: each off-CPU
// sample gets a cause label; with --wakers, the tracing frames on top of each
// waker's stack go, and a wakeup by a timer is drawn as "[woken by timer]"
// with the timer's frames only (not those of the task it interrupted).
func annotateOffCPU(p *profile.Profile) {
	var timer *profile.Location
	relabel := relabeler()
	for _, s := range p.Sample {
		state := s.Label["state"]
		if len(state) == 0 {
			continue // on-CPU
		}
		var blocked []string
		byTimer := false
		w := -1
		for i, loc := range s.Location {
			name := locName(loc)
			if strings.HasPrefix(name, WokenByPrefix) {
				w = i
				break
			}
			if isKernel(loc) {
				for _, ln := range loc.Line {
					if ln.Function != nil {
						blocked = append(blocked, ln.Function.Name)
					}
				}
			}
		}
		cause := classify(blocked)
		if state[0] == "runnable" {
			cause = "preempted"
		}
		if w < 0 {
			relabel(s, cause, false)
			continue
		}
		// The waker's kernel frames, leaf first, after the pseudo-frame.
		rest := s.Location[w+1:]
		skip := 0
		for skip < len(rest) && isKernel(rest[skip]) && tracingFrame(locName(rest[skip])) {
			skip++
		}
		rest = rest[skip:]
		for i, loc := range rest {
			if !isKernel(loc) || !hasPrefix(locName(loc), timerWakers) {
				continue
			}
			if timer == nil {
				timer = addPseudo(p, WokenByPrefix+"timer]")
			}
			s.Location[w] = timer
			rest = rest[:i+1]
			byTimer = true
			break
		}
		relabel(s, cause, byTimer)
		s.Location = append(s.Location[:w+1:w+1], rest...)
	}
}

// relabeler gives samples their cause (and a timer as their waker) in label
// maps of their own: the builder shares one set of maps among the samples of
// a thread (pprof.Builder's labelSet), and samples that share maps and get
// the same labels share the new ones.
func relabeler() func(s *profile.Sample, cause string, byTimer bool) {
	type key struct {
		label, num uintptr
		cause      string
		byTimer    bool
	}
	type labels struct {
		label map[string][]string
		num   map[string][]int64
		orig  *profile.Sample // a sample with the maps it came with, holding them (and so the key's addresses) alive
	}
	made := map[key]labels{}
	return func(s *profile.Sample, cause string, byTimer bool) {
		k := key{reflect.ValueOf(s.Label).Pointer(), reflect.ValueOf(s.NumLabel).Pointer(), cause, byTimer}
		if m, ok := made[k]; ok {
			s.Label, s.NumLabel = m.label, m.num
			return
		}
		orig := &profile.Sample{Label: s.Label, NumLabel: s.NumLabel}
		s.Label = maps.Clone(s.Label)
		if s.Label == nil {
			s.Label = map[string][]string{}
		}
		s.Label["cause"] = []string{cause}
		if byTimer {
			s.Label["waker_comm"] = []string{"timer"}
			s.NumLabel = maps.Clone(s.NumLabel)
			delete(s.NumLabel, "waker_pid")
		}
		made[k] = labels{s.Label, s.NumLabel, orig}
	}
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// locName is the name of a location's outermost function, "" if none.
func locName(loc *profile.Location) string {
	if n := len(loc.Line); n > 0 && loc.Line[n-1].Function != nil {
		return loc.Line[n-1].Function.Name
	}
	return ""
}

func isKernel(loc *profile.Location) bool {
	return loc.Mapping != nil && loc.Mapping.File == pprof.KernelFile
}

// addPseudo adds a location standing for name, as pprof.Builder.Pseudo does
// before symbolization.
func addPseudo(p *profile.Profile, name string) *profile.Location {
	var fid, lid uint64
	for _, f := range p.Function {
		fid = max(fid, f.ID)
	}
	for _, l := range p.Location {
		lid = max(lid, l.ID)
	}
	f := &profile.Function{ID: fid + 1, Name: name, SystemName: name}
	l := &profile.Location{ID: lid + 1, Line: []profile.Line{{Function: f}}}
	p.Function = append(p.Function, f)
	p.Location = append(p.Location, l)
	return l
}
