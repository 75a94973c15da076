package tracer

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/testutil"
)

// The fallbacks, shown by making the kernel's verifier refuse the preferred
// program variants (bpf.Config.Refuse): auto moves to the next candidate and
// says so in one line naming the refused program and the verifier's reason;
// an explicit choice fails with one line.
func TestLoadFallsBack(t *testing.T) {
	testutil.RequireRoot(t)
	if err := Preflight(""); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	const reason = "R2 !read_ok" // what the verifier says of the refused body
	cases := []struct {
		name   string
		cfg    Config
		method OffCPUMethod // chosen, when it loads
		unwind UnwindMode
		said   string // the one line said, or the error
		fails  bool
	}{
		{
			name:   "auto method, task-work refused",
			cfg:    Config{OffCPU: true, Unwind: UnwindTables, refuse: []string{"offcpu_switch_tw", "offcpu_switch_tw_impl"}},
			method: MethodSysExit, unwind: UnwindTables,
			said: "off-CPU method sys-exit: task-work was refused: the kernel's verifier refused program offcpu_switch_tw_impl: " + reason,
		},
		{
			name:   "auto method, task-work and sys-exit refused",
			cfg:    Config{OffCPU: true, Unwind: UnwindFP, refuse: []string{"offcpu_switch_tw_fp", "offcpu_switch_tw_impl_fp", "offcpu_switch_fp"}},
			method: MethodRawTP, unwind: UnwindFP,
			said: "off-CPU method raw-tp: task-work was refused: the kernel's verifier refused program offcpu_switch_tw_impl_fp: " + reason,
		},
		{
			name:   "auto unwinder, table walker refused",
			cfg:    Config{OnCPU: true, Frequency: 99, refuse: []string{"on_cpu_sample"}},
			method: MethodSysExit, unwind: UnwindFP,
			said: "walking user stacks with frame pointers only: the kernel refused the table walker: the kernel's verifier refused program on_cpu_sample: " + reason,
		},
		{
			name:  "explicit method refused",
			cfg:   Config{OffCPU: true, OffCPUMethod: MethodSysExit, Unwind: UnwindTables, refuse: []string{"offcpu_switch"}},
			said:  "--offcpu-method sys-exit: the kernel's verifier refused program offcpu_switch: " + reason + " (auto picks a method this kernel loads)",
			fails: true,
		},
		{
			name:  "explicit unwinder refused",
			cfg:   Config{OnCPU: true, Frequency: 99, Unwind: UnwindTables, refuse: []string{"on_cpu_sample"}},
			said:  "--unwind tables: the kernel's verifier refused program on_cpu_sample: " + reason + " (--unwind fp walks with frame pointers)",
			fails: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var logged bytes.Buffer
			old := slog.Default()
			slog.SetDefault(slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelInfo})))
			defer slog.SetDefault(old)

			tr, err := Start(c.cfg, proc.NewTable())
			if c.fails {
				if err == nil {
					tr.Close()
					t.Fatal("loaded; want a refusal")
				}
				if err.Error() != c.said {
					t.Errorf("error:\n got %q\nwant %q", err, c.said)
				}
				if !errors.Is(err, ErrNotSupported) {
					t.Errorf("error does not match ErrNotSupported: %v", err)
				}
				if logged.Len() > 0 {
					t.Errorf("said more than the error:\n%s", logged.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			m, _ := tr.OffCPUMethod()
			if c.cfg.OffCPU && m != c.method || tr.UnwindMode() != c.unwind {
				t.Errorf("chose %s with %s; want %s with %s", m, tr.UnwindMode(), c.method, c.unwind)
			}
			lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "msg=\""+c.said+"\"") {
				t.Errorf("said:\n%s\nwant one line saying %q", logged.String(), c.said)
			}
		})
	}
}
