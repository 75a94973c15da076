package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/internal/testutil"
)

// The known split of testdata/cpusplit and testdata/gosplit.
var cpuSplit = map[string]float64{"work_a": 0.6, "work_b": 0.3, "work_c": 0.1, "spin": 1}
var goSplit = map[string]float64{"workA": 0.6, "workB": 0.3, "workC": 0.1, "spin": 1}

func buildCPUSplit(t *testing.T, dir string) string {
	// clang keeps frame pointers in leaf functions when asked; gcc 12 does
	// not, and frame-pointer unwinding then skips the caller of spin.
	return testutil.BuildCC(t, "clang-19", filepath.Join(dir, "cpusplit"),
		[]string{"-O2", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-pthread"}, "cpusplit/cpusplit.c")
}

func TestRecordCommandC(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := buildCPUSplit(t, dir)
	out, folded := filepath.Join(dir, "c.pb.gz"), filepath.Join(dir, "c.folded")
	stderr := runEmber(t, dir, "record", "-F", "997", "-o", out, "-o", folded, "--", bin, "6", "2")
	// The summary says what matters (no zero counters, no per-map list);
	// the profile's comments have every counter and every map.
	if !regexp.MustCompile(`samples from \d+ processes written to .*c\.pb\.gz, .*c\.folded`).MatchString(stderr) ||
		regexp.MustCompile(`(?m)^ember: lost .*=0\b`).MatchString(stderr) || strings.Contains(stderr, "unwind_rows=") {
		t.Errorf("summary lacks its outputs, or shows zero counters or every map:\n%s", stderr)
	}
	p := readProfile(t, out)
	if c := strings.Join(p.Comments, "\n"); !strings.Contains(c, "user_stack_collision=") || !strings.Contains(c, "kernel memory of BPF maps") {
		t.Errorf("profile comments lack the counters or the maps' memory: %v", p.Comments)
	}
	if b, err := os.ReadFile(folded); err != nil || !strings.Contains(string(b), "work_a") {
		t.Errorf("second output %s: %v, %.200q", folded, err, b)
	}
	checkShares(t, p, nil, cpuSplit, 0.03, 2000)
	checkPprofTool(t, out, "work_a", "cpusplit.c:")
	checkMappings(t, p, bin)
}

func TestRecordPIDStrippedGo(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := testutil.BuildGo(t, filepath.Join(dir, "gosplit"), []string{"-ldflags=-s -w"}, "gosplit")
	w := exec.Command(bin, "9", "2")
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Process.Kill()
	time.Sleep(200 * time.Millisecond)
	out := filepath.Join(dir, "go.pb.gz")
	stderr := runEmber(t, dir, "record", "-F", "997", "-d", "6s", "--pid", strconv.Itoa(w.Process.Pid), "-o", out)
	// The profile's comments give every map's kernel memory (and the
	// summary's total); the PID filter's follows the one PID, not
	// kernel.pid_max (8 bytes per possible PID before).
	p := readProfile(t, out)
	if !strings.Contains(stderr, "kernel memory of BPF maps") {
		t.Errorf("summary lacks the maps' kernel memory:\n%s", stderr)
	}
	if m := regexp.MustCompile(`kernel memory of BPF maps .*\spids=(\d+)K`).FindStringSubmatch(strings.Join(p.Comments, "\n")); m == nil {
		t.Errorf("profile comments lack the kernel memory of the pids map: %v", p.Comments)
	} else if k, _ := strconv.Atoi(m[1]); k > 8 {
		t.Errorf("the pids map of a --pid run holds %d KiB, want at most 8", k)
	}
	for _, s := range p.Sample {
		if v := s.NumLabel["pid"]; len(v) != 1 || v[0] != int64(w.Process.Pid) {
			t.Fatalf("sample of pid %v in a --pid %d profile", v, w.Process.Pid)
		}
	}
	checkShares(t, p, nil, goSplit, 0.03, 2000)
	w.Wait()
}

// A whole-system recording shows kernel frames named from kallsyms and user
// frames of more than one process.
func TestRecordSystemWide(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := buildCPUSplit(t, dir)
	gobin := testutil.BuildGo(t, filepath.Join(dir, "gosplit"), nil, "gosplit")
	var pids []int
	for _, c := range []*exec.Cmd{exec.Command(bin, "5"), exec.Command(gobin, "5"), exec.Command("dd", "if=/dev/zero", "of=/dev/null", "bs=4k", "count=2000000")} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer c.Process.Kill()
		pids = append(pids, c.Process.Pid)
	}
	out := filepath.Join(dir, "sys.pb.gz")
	runEmber(t, dir, "record", "-F", "199", "-d", "3s", "-o", out)
	p := readProfile(t, out)
	userProcs := map[int64]bool{}
	kernelNamed := 0
	for _, s := range p.Sample {
		for _, loc := range s.Location {
			if loc.Mapping != nil && loc.Mapping.File == "[kernel.kallsyms]" {
				if len(loc.Line) > 0 && loc.Line[0].Function.Name != "" && !strings.HasPrefix(loc.Line[0].Function.Name, "0x") {
					kernelNamed++
				}
			} else if loc.Mapping != nil && len(loc.Line) > 0 {
				userProcs[s.NumLabel["pid"][0]] = true
			}
		}
	}
	t.Logf("%d named kernel frames; symbolized user frames from %d processes", kernelNamed, len(userProcs))
	if kernelNamed == 0 {
		t.Error("no kernel frame named from kallsyms")
	}
	for _, pid := range pids[:2] {
		if !userProcs[int64(pid)] {
			t.Errorf("no symbolized user frames of workload pid %d", pid)
		}
	}
	if len(userProcs) < 2 {
		t.Errorf("symbolized user frames of %d processes, want several", len(userProcs))
	}
}

// checkPprofTool runs `go tool pprof` on the file: -top and -traces must read
// it without warnings and show fn; -lines must show file:line.
func checkPprofTool(t *testing.T, name, fn, fileLine string) {
	t.Helper()
	gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if os.Getenv("GOROOT") == "" {
		gobin = "go"
	}
	for _, mode := range []string{"-top", "-traces", "-lines"} {
		args := []string{"tool", "pprof", mode, "-nodecount=200", name}
		if mode == "-lines" {
			args = []string{"tool", "pprof", "-top", "-lines", "-nodecount=200", name}
		}
		cmd := exec.Command(gobin, args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go tool pprof %s: %v\n%s", mode, err, out)
		}
		s := string(out)
		if strings.Contains(strings.ToLower(s), "warning") {
			t.Errorf("go tool pprof %s warns:\n%s", mode, s)
		}
		if !strings.Contains(s, fn) {
			t.Errorf("go tool pprof %s does not show %s:\n%.2000s", mode, fn, s)
		}
		if mode == "-lines" && !strings.Contains(s, fileLine) {
			t.Errorf("go tool pprof -lines does not show %s:\n%.2000s", fileLine, s)
		}
	}
}

// checkMappings asserts the workload's mapping is real: its file, a build ID
// and sensible bounds.
func checkMappings(t *testing.T, p *profile.Profile, bin string) {
	t.Helper()
	for _, m := range p.Mapping {
		if m.File == bin {
			if m.BuildID == "" || m.Start >= m.Limit || !m.HasFunctions {
				t.Errorf("mapping of %s: %+v", bin, m)
			}
			return
		}
	}
	t.Errorf("no mapping of %s among %d", bin, len(p.Mapping))
}

// --cgroup profiles a cgroup v2 subtree, filtered in the kernel: a workload
// in parent/child and one in parent itself are profiled with --cgroup
// parent, whole stacks and a full share of samples each, and a sibling of
// parent is not; --cgroup is repeatable (child and sibling, not parent). The
// cgroups are made and removed by the test. The child is two levels down and
// named as the kubelet and containerd name a pod's container, the sibling as
// Docker names a container: their samples carry container_id and pod_uid.
func TestRecordCgroupSubtree(t *testing.T) {
	testutil.RequireRoot(t)
	mnt := testutil.Cgroup2Mount(t)
	parent, err := os.MkdirTemp(mnt, "ember-test-")
	if err != nil {
		testutil.SkipOrFail(t, "cannot create a cgroup v2 under %s: %v", mnt, err)
	}
	t.Cleanup(func() { os.Remove(parent) })
	const (
		podUID = "0e6b1e8d-4c2a-4f3b-9a1d-7c5e2b8f6a30"
		ctrID  = "3f1e5a0c9b7d4e2f8a6c1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f"
		dockID = "c0ffee0c9b7d4e2f8a6c1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f"
	)
	pod := filepath.Join(parent, "kubepods-burstable-pod"+strings.ReplaceAll(podUID, "-", "_")+".slice")
	child := filepath.Join(pod, "cri-containerd-"+ctrID+".scope")
	for _, d := range []string{pod, child} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(d) })
	}
	siblingParent, err := os.MkdirTemp(mnt, "ember-test-sibling-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(siblingParent) })
	sibling := filepath.Join(siblingParent, "docker-"+dockID+".scope")
	if err := os.Mkdir(sibling, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(sibling) })

	dir := t.TempDir()
	bin := buildCPUSplit(t, dir)
	pid := map[string]int64{}
	for _, cg := range []string{parent, child, sibling} {
		// Long enough to outlive both recordings; killed at the end, before
		// the cgroups are removed (Cleanup runs last-registered first).
		c := exec.Command(bin, "60")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(c.Process.Pid)), 0); err != nil {
			t.Fatal(err)
		}
		pid[cg] = int64(c.Process.Pid)
	}
	rel := func(cg string) string { return strings.TrimPrefix(cg, mnt) }
	samplesByPID := func(p *profile.Profile) map[int64]int64 {
		n := map[int64]int64{}
		for _, s := range p.Sample {
			n[s.NumLabel["pid"][0]] += s.Value[0]
		}
		return n
	}

	out := filepath.Join(dir, "parent.pb.gz")
	stderr := runEmber(t, dir, "record", "-F", "999", "-d", "4s", "--cgroup", rel(parent), "-o", out)
	if !strings.Contains(stderr, "and its descendants") {
		t.Errorf("record does not say it profiles the subtree:\n%s", stderr)
	}
	p := readProfile(t, out)
	got := samplesByPID(p)
	t.Logf("--cgroup parent: samples by pid %v (parent %d, child %d, sibling %d)", got, pid[parent], pid[child], pid[sibling])
	if got[pid[sibling]] != 0 || len(got) != 2 {
		t.Errorf("want samples of the parent's and the child's workloads only, got %v", got)
	}
	// The same program in two cgroups, neither with a CPU controller: the
	// scheduler gives them the same share, so the child's samples are as
	// many as the parent's, not a remnant.
	if c, pa := got[pid[child]], got[pid[parent]]; c < pa*6/10 || pa < c*6/10 {
		t.Errorf("child workload %d samples, parent workload %d: want about as many", c, pa)
	}
	checkShares(t, p, func(s *profile.Sample) bool { return s.NumLabel["pid"][0] == pid[child] }, cpuSplit, 0.07, 200)
	checkContainerLabels(t, p, pid[child], ctrID, podUID)
	checkContainerLabels(t, p, pid[parent], "", "")

	out = filepath.Join(dir, "two.pb.gz")
	runEmber(t, dir, "record", "-F", "499", "-d", "2s", "--cgroup", rel(child), "--cgroup", sibling, "-o", out)
	p = readProfile(t, out)
	got = samplesByPID(p)
	t.Logf("--cgroup parent/child --cgroup sibling: samples by pid %v", got)
	if got[pid[child]] == 0 || got[pid[sibling]] == 0 || len(got) != 2 {
		t.Errorf("want samples of the child's and the sibling's workloads only, got %v", got)
	}
	checkContainerLabels(t, p, pid[sibling], dockID, "")
}

// checkContainerLabels asserts every sample of pid is labelled with the
// container ID and pod UID given, "" meaning no such label.
func checkContainerLabels(t *testing.T, p *profile.Profile, pid int64, container, pod string) {
	t.Helper()
	n := 0
	for _, s := range p.Sample {
		if s.NumLabel["pid"][0] != pid {
			continue
		}
		n++
		for name, want := range map[string]string{"container_id": container, "pod_uid": pod} {
			if got := strings.Join(s.Label[name], ","); got != want {
				t.Fatalf("sample of pid %d labelled %s=%q, want %q", pid, name, got, want)
			}
		}
	}
	if n == 0 {
		t.Errorf("no samples of pid %d to check labels on", pid)
	}
}
