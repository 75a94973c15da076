package folded

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/emberprof/ember/export/internal/synth"
	"github.com/emberprof/ember/export/stacks"
)

func write(t *testing.T, opts Options) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, synth.Known(), opts); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestKnownSamples(t *testing.T) {
	got := write(t, Options{SampleType: "samples"})
	// Root first, inlined helper after compute, the two processes merged,
	// the kernel frames after read, the unsymbolized frame named by
	// library and file offset (0x1234 from the mapping start).
	want := `main;libstripped.so+0x1234 1
main;run;compute 3
main;run;compute;helper 9
main;run;read;entry_SYSCALL_64;ksys_read;vfs_read 2
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestKnownDefaultIsCPU(t *testing.T) {
	got := write(t, Options{})
	p := synth.Period
	want := "main;libstripped.so+0x1234 " + strconv.FormatInt(p, 10) + "\n" +
		"main;run;compute " + strconv.FormatInt(3*p, 10) + "\n" +
		"main;run;compute;helper " + strconv.FormatInt(9*p, 10) + "\n" +
		"main;run;read;entry_SYSCALL_64;ksys_read;vfs_read " + strconv.FormatInt(2*p, 10) + "\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestKnownProcessRootAndKernelSuffix(t *testing.T) {
	got := write(t, Options{SampleType: "samples/count", ProcessRoot: true, KernelSuffix: true})
	want := `app;main;libstripped.so+0x1234 1
app;main;run;compute 3
app;main;run;compute;helper 5
app;main;run;read;entry_SYSCALL_64_[k];ksys_read_[k];vfs_read_[k] 2
other;main;run;compute;helper 4
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestWallTypes(t *testing.T) {
	for _, tc := range []struct{ typ, want string }{
		{"", "main;compute 6000000\nmain;read;schedule 30000000\n"}, // wall is last
		{"cpu", "main;compute 6000000\n"},                           // zero stacks left out
		{"offcpu", "main;read;schedule 30000000\n"},
		{"1", "main;read;schedule 30000000\n"},
	} {
		var buf bytes.Buffer
		if err := Write(&buf, synth.Wall(), Options{SampleType: tc.typ}); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tc.want {
			t.Errorf("type %q: got\n%s\nwant\n%s", tc.typ, buf.String(), tc.want)
		}
	}
}

func TestUnknownSampleType(t *testing.T) {
	err := Write(new(bytes.Buffer), synth.Known(), Options{SampleType: "alloc_space"})
	if !errors.Is(err, stacks.ErrSampleType) {
		t.Fatalf("err = %v, want ErrSampleType", err)
	}
	if !strings.Contains(err.Error(), "cpu/nanoseconds") {
		t.Errorf("error %q does not list the sample types", err)
	}
}

func TestNamesAreSanitized(t *testing.T) {
	p := synth.Known()
	p.Function[0].Name = "operator;weird\nname"
	var buf bytes.Buffer
	if err := Write(&buf, p, Options{SampleType: "samples"}); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("line %q has no count", line)
		}
		if _, err := strconv.ParseInt(line[i+1:], 10, 64); err != nil {
			t.Errorf("line %q: count: %v", line, err)
		}
		if !strings.HasPrefix(line, "operator:weird name;") {
			t.Errorf("line %q: root frame not sanitized", line)
		}
	}
}

// TestTotalsPreserved checks on a large generated profile that the folded
// counts add up to the profile's total, line by line parseable.
func TestTotalsPreserved(t *testing.T) {
	p := synth.Generate(2000, 1)
	var want int64
	for _, s := range p.Sample {
		want += s.Value[1]
	}
	var buf bytes.Buffer
	if err := Write(&buf, p, Options{}); err != nil {
		t.Fatal(err)
	}
	var got int64
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	for _, line := range lines {
		i := strings.LastIndexByte(line, ' ')
		n, err := strconv.ParseInt(line[i+1:], 10, 64)
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if d := strings.Count(line[:i], ";") + 1; d < 20 {
			t.Errorf("line %q: depth %d < 20", line, d)
		}
		got += n
	}
	if got != want {
		t.Errorf("folded total %d, profile total %d", got, want)
	}
	if len(lines) != 2000 {
		t.Errorf("%d lines, want 2000 distinct stacks", len(lines))
	}
}
