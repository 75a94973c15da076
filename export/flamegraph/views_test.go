package flamegraph

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/pprof/profile"
)

// wakersProfile is an off-CPU profile as `record --wakers` writes it: each
// stack (leaf first) is the blocked frames, "[woken by COMM]" or "[not
// woken]", then the waker's frames, with a cause label.
func wakersProfile() *profile.Profile {
	p := &profile.Profile{SampleType: []*profile.ValueType{{Type: "offcpu", Unit: "nanoseconds"}}}
	locs := map[string]*profile.Location{}
	loc := func(name string) *profile.Location {
		if l := locs[name]; l != nil {
			return l
		}
		f := &profile.Function{ID: uint64(len(p.Function) + 1), Name: name}
		l := &profile.Location{ID: uint64(len(p.Location) + 1), Line: []profile.Line{{Function: f}}}
		p.Function, p.Location = append(p.Function, f), append(p.Location, l)
		locs[name] = l
		return l
	}
	add := func(v int64, cause string, frames ...string) {
		s := &profile.Sample{Value: []int64{v}, Label: map[string][]string{"comm": {"app"}, "cause": {cause}}}
		for _, f := range frames {
			s.Location = append(s.Location, loc(f))
		}
		p.Sample = append(p.Sample, s)
	}
	add(100, "pipe", "read", "consume", "[woken by producer]", "produce", "main")
	add(50, "lock", "lock_wait", "take", "[woken by holder]", "release", "main")
	add(25, "preempted", "spin_wait", "[not woken]")
	return p
}

// The page of a --wakers profile shows or hides the wakers and the cause
// grouping without a second graph, and colours by cause.
func TestBrowserWakersAndCauses(t *testing.T) {
	bin := chromium(t)
	page := filepath.Join(t.TempDir(), "wakers.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHTML(f, wakersProfile(), Options{ProcessRoot: true}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, c := range []struct {
		fragment       string
		nodes          int
		wakers, groups string
	}{
		// all, app, main, produce, [woken by producer], consume, read,
		// release, [woken by holder], take, lock_wait, [not woken], spin_wait
		{"", 13, "shown", "hidden"},
		// all, app, consume, read, take, lock_wait, spin_wait
		{"wakers=0", 7, "hidden", "hidden"},
		// all and, per cause, the cause's root over its stacks
		{"groups=1", 19, "shown", "shown"},
		{"wakers=0&groups=1", 12, "hidden", "shown"},
	} {
		st := pageState(t, bin, page, c.fragment)
		if st.int(t, "nodes") != c.nodes || st["wakers"] != c.wakers || st["groups"] != c.groups {
			t.Errorf("#%s: %s nodes, wakers %s, groups %s; want %d, %s, %s", c.fragment, st["nodes"],
				st["wakers"], st["groups"], c.nodes, c.wakers, c.groups)
		}
		if st.int(t, "frames-drawn") != c.nodes {
			t.Errorf("#%s: %s frames drawn of %d", c.fragment, st["frames-drawn"], c.nodes)
		}
	}
	st := pageState(t, bin, page, "colour=cause&tip=consume")
	if st["colour"] != "cause" {
		t.Errorf("colour %q, want cause", st["colour"])
	}
	// The consume frame holds 100 of the 175 ns: its share survives the view.
	if want := "57.14% of all"; !strings.Contains(st["tip"], want) {
		t.Errorf("tooltip %q lacks %q", st["tip"], want)
	}
}
