package tracer

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emberprof/ember/bpf"
	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/internal/testutil"
)

// Auto's decision is cached per kernel build: the first start decides and
// writes it, the next loads the decided candidate directly and says the
// same fallback line once, naming the cache; a cached candidate the kernel
// refuses is forgotten and auto decides again; a file others may write is
// not read.
func TestAutoDecisionCached(t *testing.T) {
	testutil.RequireRoot(t)
	if err := Preflight(""); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	dir := t.TempDir()
	t.Setenv(CacheDirEnv, dir)
	cfg := Config{OffCPU: true}
	start := func() (OffCPUMethod, UnwindMode, string) {
		t.Helper()
		var logged bytes.Buffer
		old := slog.Default()
		slog.SetDefault(slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelInfo})))
		defer slog.SetDefault(old)
		tr, err := Start(cfg, proc.NewTable())
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		m, _ := tr.OffCPUMethod()
		return m, tr.UnwindMode(), logged.String()
	}
	m0, u0, said0 := start()
	files, _ := filepath.Glob(filepath.Join(dir, "auto-*.json"))
	if len(files) != 1 {
		t.Fatalf("cache files %v; want one", files)
	}
	file := files[0]
	var d decision
	if b, err := os.ReadFile(file); err != nil || json.Unmarshal(b, &d) != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	if d.Method != m0 || d.Unwind != u0 {
		t.Fatalf("cached %s/%s; chose %s/%s", d.Method, d.Unwind, m0, u0)
	}

	m1, u1, said1 := start()
	if m1 != m0 || u1 != u0 {
		t.Errorf("with the cache: %s/%s; without: %s/%s", m1, u1, m0, u0)
	}
	for _, l := range d.Said {
		if !strings.Contains(said0, l) || !strings.Contains(said1, l+" (decided on an earlier run on this kernel build, cached in "+file+")") {
			t.Errorf("line %q: first run said\n%s\nsecond run said\n%s", l, said0, said1)
		}
	}
	if n := strings.Count(strings.TrimSpace(said1), "\n") + 1; len(d.Said) > 0 && n != len(d.Said) {
		t.Errorf("second run said %d lines; want %d:\n%s", n, len(d.Said), said1)
	}

	// A decision the kernel refuses (a task-work hook this kernel lacks or
	// refuses): forgotten, and auto decides again.
	wrong := d
	wrong.Method, wrong.Unwind = MethodTaskWork, UnwindTables
	wrong.Hook = -1
	for _, h := range MethodTaskWork.hooks() {
		if bpf.ProbeHook(bpf.Config{OffCPU: true, Hook: h, UnwindTables: true}) != nil {
			wrong.Hook = h
			break
		}
	}
	if wrong.Hook < 0 {
		t.Log("this kernel takes every task-work hook: no refused decision to cache")
	} else {
		b, _ := json.Marshal(wrong)
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		m2, u2, _ := start()
		if m2 != m0 || u2 != u0 {
			t.Errorf("after a refused cached decision: %s/%s; want %s/%s", m2, u2, m0, u0)
		}
		if b, err := os.ReadFile(file); err != nil || json.Unmarshal(b, &d) != nil || d.Method != m0 || d.Hook != wrong.Hook && d.Method == MethodTaskWork {
			t.Errorf("the refused decision was not replaced: %s (%v)", b, err)
		}
	}

	// Writable by others: ignored (and then replaced by a private one).
	if err := os.Chmod(file, 0o666); err != nil {
		t.Fatal(err)
	}
	if got := (&decisions{key: d.Key, path: file}).get(); got != nil {
		t.Errorf("read a decision from a file others may write")
	}
}
