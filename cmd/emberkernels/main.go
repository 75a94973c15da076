// Command emberkernels is Ember's kernel matrix: it boots Debian's kernels
// (5.10, 6.1, 6.1 PREEMPT_RT, 6.12, 6.18 and the newest 7.x) in qemu and runs
// Ember's checks inside each, so that "supported kernels" means kernels
// Ember has been seen to work on, as cilium/ebpf proves itself on a kernel
// matrix. A check expected to pass on a kernel that fails makes it exit 1.
//
// On the host (`make test-kernels`) it installs what it needs with apt,
// resolves each kernel line to the newest package in Debian's archive through
// a private apt configuration under build/kernels/apt, builds Ember, its
// test binary and the workloads statically from the working tree, packs them
// with itself as /init into an initramfs, and boots each kernel once, one
// after the other. Inside a guest (PID 1) it is that init: it runs the checks
// and reports on the second serial port, then powers off.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	switch {
	case os.Getpid() == 1:
		guestMain()
	case filepath.Base(os.Args[0]) == "go":
		goShim()
	default:
		os.Exit(hostMain())
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "emberkernels: "+format+"\n", args...)
}

// hostPackages are the Debian packages the host needs, by the command that
// shows each is there.
var hostPackages = map[string]string{
	"qemu-system-x86_64": "qemu-system-x86",
	"busybox":            "busybox-static",
	"clang-19":           "clang-19",
	"gcc":                "gcc",
	"dpkg-deb":           "dpkg",
	"apt-get":            "apt",
}

// installHostPackages installs what is missing, with the host's apt (the
// only use of it; kernels come through the private configuration). Static
// glibc (libc.a) comes with libc6-dev.
func installHostPackages() error {
	var missing []string
	for cmd, pkg := range hostPackages {
		if _, err := exec.LookPath(cmd); err != nil {
			missing = append(missing, pkg)
		}
	}
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/libc.a"); err != nil {
		missing = append(missing, "libc6-dev")
	}
	if len(missing) == 0 {
		return nil
	}
	logf("installing %s", strings.Join(missing, " "))
	for _, args := range [][]string{
		{"apt-get", "update", "-qq"},
		append([]string{"apt-get", "install", "-y", "-qq", "--no-install-recommends"}, missing...),
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// kernel is a kernel line resolved to a package and its image.
type kernel struct {
	line    kernelLine
	pkg     pkgVersion
	vmlinuz string
}

func hostMain() int {
	var (
		kernelsFlag = flag.String("kernels", "", "comma-separated kernel lines to run (default all: "+lineNames()+")")
		checksFlag  = flag.String("checks", "", "comma-separated checks to run (default all)")
		buildDir    = flag.String("build", "build/kernels", "cache and work directory (debs, images, logs)")
		repo        = flag.String("repo", ".", "Ember's working tree to build the guest's binaries from")
		accel       = flag.String("accel", "auto", "tcg, kvm, or auto: kvm if it boots a test guest, else tcg")
		cpuModel    = flag.String("cpu", "max", "qemu's -cpu model under TCG")
		timeout     = flag.Duration("timeout", 8*time.Minute, "deadline for one kernel's boot and checks")
	)
	flag.Parse()
	start := time.Now()
	lines, err := selectLines(*kernelsFlag)
	if err != nil {
		logf("%v", err)
		return 2
	}
	if err := installHostPackages(); err != nil {
		logf("%v", err)
		return 1
	}
	bd, err := filepath.Abs(*buildDir)
	if err != nil {
		logf("%v", err)
		return 1
	}
	kernels, err := resolveKernels(filepath.Join(bd, "apt"), lines)
	if err != nil {
		logf("%v", err)
		return 1
	}
	logf("kernels resolved and downloaded in %.0fs", time.Since(start).Seconds())
	buildStart := time.Now()
	initramfs, err := buildGuest(*repo, filepath.Join(bd, "guest"))
	if err != nil {
		logf("%v", err)
		return 1
	}
	logf("guest built in %.0fs: %s", time.Since(buildStart).Seconds(), initramfs)

	q := qemuConfig{accel: "tcg", cpu: *cpuModel, timeout: *timeout, checks: *checksFlag}
	switch *accel {
	case "kvm", "tcg":
		q.accel = *accel
	case "auto":
		if kvmWorks(kernels[0].vmlinuz, initramfs, filepath.Join(bd, "logs", "kvm-probe")) {
			q.accel = "kvm"
		}
	default:
		logf("-accel %q: want tcg, kvm or auto", *accel)
		return 2
	}
	logf("accelerator: %s", q.accel)

	var rows []row
	var boots []bootSummary
	for _, k := range kernels {
		logf("booting %s: %s %s (%s)", k.line.Name, k.pkg.Package, k.pkg.Version, k.pkg.Suite)
		r := q.boot(k.vmlinuz, initramfs, k.line.Name, filepath.Join(bd, "logs", k.line.Name), func(c checkResult) {
			verdict, _ := judge(k.line.Name, c)
			logf("  %-6s %-22s %-18s %6.1fs  %s", k.line.Name, c.name, verdict, c.seconds, c.detail)
		})
		rows = append(rows, kernelRows(k, r, *checksFlag)...)
		boots = append(boots, bootSummary{k, r})
		if r.err != nil {
			logf("%s: %v", k.line.Name, r.err)
		}
		if r.panicked != "" {
			logf("%s: console: %s", k.line.Name, r.panicked)
		}
	}
	failed := printTable(os.Stdout, rows, boots)
	fmt.Printf("total %.0fs; logs in %s\n", time.Since(start).Seconds(), filepath.Join(bd, "logs"))
	if failed > 0 {
		fmt.Printf("FAIL: %d checks expected to pass did not\n", failed)
		return 1
	}
	fmt.Println("PASS")
	return 0
}

func lineNames() string {
	var n []string
	for _, l := range kernelLines {
		n = append(n, l.Name)
	}
	return strings.Join(n, ",")
}

func selectLines(list string) ([]kernelLine, error) {
	if list == "" {
		return kernelLines, nil
	}
	var out []kernelLine
	for _, name := range strings.Split(list, ",") {
		found := false
		for _, l := range kernelLines {
			if l.Name == strings.TrimSpace(name) {
				out = append(out, l)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown kernel line %q (have %s)", name, lineNames())
		}
	}
	return out, nil
}

// resolveKernels updates the private apt lists, picks the newest package
// of each line and extracts its image (downloads are cached).
func resolveKernels(aptDir string, lines []kernelLine) ([]kernel, error) {
	a, err := newPrivateApt(aptDir)
	if err != nil {
		return nil, err
	}
	if err := a.update(); err != nil {
		// Offline, a developer can still run the kernels of the last
		// update; CI, from a fresh clone, has no lists and fails below.
		logf("%v; going on with the lists of the last update, if any", err)
	}
	vs, err := a.versions(`^linux-image-[0-9].*-(cloud|rt)-amd64$`)
	if err != nil {
		return nil, err
	}
	var ks []kernel
	for _, l := range lines {
		v, err := l.newest(vs)
		if err != nil {
			return nil, err
		}
		img, err := a.vmlinuz(v)
		if err != nil {
			return nil, fmt.Errorf("kernel %s: %w", l.Name, err)
		}
		ks = append(ks, kernel{l, v, img})
	}
	if len(lines) == len(kernelLines) {
		a.prune(ks)
	}
	return ks, nil
}
