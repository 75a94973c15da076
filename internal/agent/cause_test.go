package agent

import (
	"reflect"
	"slices"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/pprof"
)

// The cause table, on kernel stacks (leaf first) as Linux 5.10 to 6.18 name
// their functions.
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		want  string
		stack []string
	}{
		{"pipe", []string{"__schedule", "schedule", "pipe_read", "vfs_read", "ksys_read"}},
		{"pipe", []string{"__schedule", "schedule", "anon_pipe_read", "vfs_read"}},
		{"lock", []string{"__schedule", "schedule", "futex_wait_queue", "__futex_wait", "futex_wait", "do_futex"}},
		{"lock", []string{"__schedule", "schedule", "futex_do_wait", "__futex_wait"}},
		{"lock", []string{"__schedule", "schedule_preempt_disabled", "__mutex_lock.constprop.0", "do_last"}},
		{"poll", []string{"__schedule", "schedule_hrtimeout_range_clock", "ep_poll", "do_epoll_wait"}},
		{"poll", []string{"__schedule", "schedule_hrtimeout_range", "do_poll.constprop.0", "do_sys_poll"}},
		{"net", []string{"__schedule", "schedule_timeout", "sk_wait_data", "tcp_recvmsg_locked", "tcp_recvmsg"}},
		{"net", []string{"__schedule", "schedule_timeout", "inet_csk_accept", "inet_accept", "do_accept"}},
		{"net", []string{"__schedule", "schedule_timeout", "unix_stream_data_wait", "unix_stream_read_generic"}},
		{"disk", []string{"__schedule", "io_schedule", "folio_wait_bit_common", "filemap_read"}},
		{"disk", []string{"__schedule", "io_schedule", "folio_wait_bit_common", "filemap_fault", "__do_fault", "handle_mm_fault", "exc_page_fault"}},
		{"page-fault", []string{"__schedule", "schedule", "handle_userfault", "handle_mm_fault", "do_user_addr_fault"}},
		{"sleep", []string{"__schedule", "schedule", "do_nanosleep", "hrtimer_nanosleep", "common_nsleep"}},
		{"other", []string{"__schedule", "schedule", "do_wait", "kernel_wait4"}},
		{"other", nil},
	} {
		if got := classify(c.stack); got != c.want {
			t.Errorf("classify(%v) = %s, want %s", c.stack, got, c.want)
		}
	}
}

// annotateOffCPU labels causes, drops the tracing frames atop a waker's
// stack, and draws a timer's wakeup as the timer's alone.
func TestAnnotateOffCPU(t *testing.T) {
	kern := &profile.Mapping{ID: 1, File: pprof.KernelFile}
	user := &profile.Mapping{ID: 2, File: "/bin/app"}
	var fid, lid uint64
	p := &profile.Profile{Mapping: []*profile.Mapping{kern, user}, SampleType: []*profile.ValueType{{Type: "offcpu", Unit: "nanoseconds"}}}
	loc := func(m *profile.Mapping, name string) *profile.Location {
		fid++
		lid++
		f := &profile.Function{ID: fid, Name: name}
		l := &profile.Location{ID: lid, Mapping: m, Line: []profile.Line{{Function: f}}}
		p.Function = append(p.Function, f)
		p.Location = append(p.Location, l)
		return l
	}
	k := func(name string) *profile.Location { return loc(kern, name) }
	u := func(name string) *profile.Location { return loc(user, name) }
	pseudo := func(name string) *profile.Location { return loc(nil, name) }
	piped := &profile.Sample{
		Location: []*profile.Location{k("schedule"), k("pipe_read"), u("consume"), pseudo("[woken by producer]"),
			k("bpf_prog_1234_offcpu_waking"), k("__bpf_trace_sched_waking"), k("try_to_wake_up"), k("pipe_write"), u("produce")},
		Label:    map[string][]string{"state": {"sleeping"}, "waker_comm": {"producer"}},
		NumLabel: map[string][]int64{"waker_pid": {7}},
	}
	timed := &profile.Sample{
		Location: []*profile.Location{k("schedule"), k("do_nanosleep"), u("nap"), pseudo("[woken by spinner]"),
			k("try_to_wake_up"), k("hrtimer_wakeup"), k("__hrtimer_run_queues"), k("sysvec_apic_timer_interrupt"), u("spin")},
		Label:    map[string][]string{"state": {"sleeping"}, "waker_comm": {"spinner"}},
		NumLabel: map[string][]int64{"waker_pid": {9}},
	}
	preempted := &profile.Sample{
		Location: []*profile.Location{k("schedule"), k("pipe_read"), pseudo("[not woken]")},
		Label:    map[string][]string{"state": {"runnable"}},
	}
	oncpu := &profile.Sample{Location: []*profile.Location{u("spin")}, Label: map[string][]string{}}
	p.Sample = []*profile.Sample{piped, timed, preempted, oncpu}
	for _, s := range p.Sample {
		s.Value = []int64{1}
	}
	annotateOffCPU(p)

	names := func(s *profile.Sample) []string {
		var out []string
		for _, l := range s.Location {
			out = append(out, locName(l))
		}
		return out
	}
	for _, c := range []struct {
		s          *profile.Sample
		cause      string
		frames     []string
		wakerComm  string
		wakerPIDOK bool
	}{
		{piped, "pipe", []string{"schedule", "pipe_read", "consume", "[woken by producer]", "try_to_wake_up", "pipe_write", "produce"}, "producer", true},
		{timed, "sleep", []string{"schedule", "do_nanosleep", "nap", "[woken by timer]", "try_to_wake_up", "hrtimer_wakeup"}, "timer", false},
		{preempted, "preempted", []string{"schedule", "pipe_read", "[not woken]"}, "", false},
	} {
		if got := c.s.Label["cause"]; !slices.Equal(got, []string{c.cause}) {
			t.Errorf("cause %v, want %s", got, c.cause)
		}
		if got := names(c.s); !slices.Equal(got, c.frames) {
			t.Errorf("frames\n got %v\nwant %v", got, c.frames)
		}
		if c.wakerComm != "" && !slices.Equal(c.s.Label["waker_comm"], []string{c.wakerComm}) {
			t.Errorf("waker_comm %v, want %s", c.s.Label["waker_comm"], c.wakerComm)
		}
		if _, ok := c.s.NumLabel["waker_pid"]; ok != c.wakerPIDOK {
			t.Errorf("waker_pid present %v, want %v", ok, c.wakerPIDOK)
		}
	}
	if _, ok := oncpu.Label["cause"]; ok {
		t.Error("on-CPU sample got a cause")
	}
	if err := p.CheckValid(); err != nil {
		t.Errorf("profile invalid after annotation: %v", err)
	}
}

// Samples that share their label maps (one thread's, pprof.Builder) get
// their own causes: labelling one does not label the others, and those
// given the same labels share the new maps.
func TestAnnotateOffCPUSharedLabels(t *testing.T) {
	kern := &profile.Mapping{ID: 1, File: pprof.KernelFile}
	p := &profile.Profile{Mapping: []*profile.Mapping{kern}, SampleType: []*profile.ValueType{{Type: "offcpu", Unit: "nanoseconds"}}}
	loc := func(name string) *profile.Location {
		f := &profile.Function{ID: uint64(len(p.Function) + 1), Name: name}
		l := &profile.Location{ID: uint64(len(p.Location) + 1), Mapping: kern, Line: []profile.Line{{Function: f}}}
		p.Function = append(p.Function, f)
		p.Location = append(p.Location, l)
		return l
	}
	label := map[string][]string{"state": {"sleeping"}}
	num := map[string][]int64{"pid": {1}, "tid": {1}}
	piped := &profile.Sample{Location: []*profile.Location{loc("schedule"), loc("pipe_read")}, Label: label, NumLabel: num, Value: []int64{1}}
	slept := &profile.Sample{Location: []*profile.Location{loc("schedule"), loc("do_nanosleep")}, Label: label, NumLabel: num, Value: []int64{1}}
	piped2 := &profile.Sample{Location: []*profile.Location{loc("schedule"), loc("pipe_read"), loc("vfs_read")}, Label: label, NumLabel: num, Value: []int64{1}}
	p.Sample = []*profile.Sample{piped, slept, piped2}
	annotateOffCPU(p)
	for _, c := range []struct {
		s     *profile.Sample
		cause string
	}{{piped, "pipe"}, {slept, "sleep"}, {piped2, "pipe"}} {
		if got := c.s.Label["cause"]; !slices.Equal(got, []string{c.cause}) {
			t.Errorf("cause %v, want %s", got, c.cause)
		}
	}
	if _, ok := label["cause"]; ok {
		t.Error("the shared label map was written")
	}
	if reflect.ValueOf(piped.Label).Pointer() != reflect.ValueOf(piped2.Label).Pointer() {
		t.Error("two samples of one thread with one cause do not share their new labels")
	}
}
