package main

import (
	"bufio"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// cpioWriter writes the "new ASCII" (newc) cpio format the kernel unpacks
// an initramfs from (Documentation/driver-api/early-userspace/
// buffer-format.rst): a 110-byte header of hex fields, the name, then the
// data, each padded to 4 bytes.
type cpioWriter struct {
	w   io.Writer
	ino int
	off int64
	err error
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.off += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.off % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// entry writes one member; mode carries the file type bits (S_IFREG, ...).
func (c *cpioWriter) entry(name string, mode uint32, rdevMajor, rdevMinor int, data []byte) {
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad()
	c.write(data)
	c.pad()
}

func (c *cpioWriter) dir(name string) { c.entry(name, 0o040755, 0, 0, nil) }

func (c *cpioWriter) file(name string, data []byte) { c.entry(name, 0o100755, 0, 0, data) }

func (c *cpioWriter) symlink(name, target string) {
	c.entry(name, 0o120777, 0, 0, []byte(target))
}

func (c *cpioWriter) close() error {
	c.entry("TRAILER!!!", 0, 0, 0, nil)
	return c.err
}

// guestFile is one file of the initramfs and the host file it comes from.
type guestFile struct {
	path, src string
}

// buildGuest builds everything the guest runs from the working tree at
// repo (so that uncommitted changes to Ember are what the matrix tests),
// all static, into dir, and writes the gzipped initramfs; it returns its
// path. The Go builds are incremental through Go's build cache; the C
// workloads take a second.
func buildGuest(repo, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build dir: %w", err)
	}
	goTool := goBinary()
	p := func(n string) string { return filepath.Join(dir, n) }
	steps := []struct {
		what string
		cmd  []string
	}{
		{"ember", []string{goTool, "build", "-o", p("ember"), "./cmd/ember"}},
		{"cmd/ember's test binary", []string{goTool, "test", "-c", "-o", p("ember.test"), "./cmd/ember"}},
		{"the guest's init", []string{goTool, "build", "-o", p("init"), "./cmd/emberkernels"}},
		// cmd/ember's tests check profiles with `go tool pprof`; the
		// guest's /bin/go (the init binary) runs this pprof for them.
		{"pprof", []string{goTool, "build", "-ldflags=-s -w", "-o", p("pprof"), "cmd/pprof"}},
		// The workloads with the flags internal/testutil builds them with
		// (BuildCC for cpusplit in cmd/ember/record_test.go, BuildOffCPU),
		// plus -static: the guest has no libc.
		{"cpusplit", []string{"clang-19", "-static", "-o", p("cpusplit"), "-O2", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-pthread", "testdata/cpusplit/cpusplit.c"}},
		{"blocker", []string{"clang-19", "-static", "-o", p("blocker"), "-O2", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-fno-optimize-sibling-calls", "-pthread", "testdata/offcpu/blocker.c"}},
		{"pingpong", []string{"clang-19", "-static", "-o", p("pingpong"), "-O2", "-g", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-fno-optimize-sibling-calls", "-pthread", "testdata/offcpu/pingpong.c"}},
	}
	for _, s := range steps {
		start := time.Now()
		cmd := exec.Command(s.cmd[0], s.cmd[1:]...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build %s (%s): %w\n%s", s.what, strings.Join(s.cmd, " "), err, out)
		}
		logf("built %s in %.1fs", s.what, time.Since(start).Seconds())
	}
	files := []guestFile{
		{"init", p("init")},
		{"bin/ember", p("ember")},
		{"bin/ember.test", p("ember.test")},
		{"bin/pprof", p("pprof")},
		{"opt/ember/testdata/cpusplit", p("cpusplit")},
		{"opt/ember/testdata/blocker", p("blocker")},
		{"opt/ember/testdata/pingpong", p("pingpong")},
	}
	links := map[string]string{"bin/go": "/init"}
	// busybox is not needed by the checks; it gives a shell to whoever
	// debugs a guest (ember.checks=none and an init= of their own).
	if bb, err := exec.LookPath("busybox"); err == nil && isStatic(bb) {
		files = append(files, guestFile{"bin/busybox", bb})
		links["bin/sh"] = "busybox"
	}
	for _, f := range files {
		if !isStatic(f.src) {
			return "", fmt.Errorf("%s is not a static executable; the guest has no libc or loader", f.src)
		}
	}
	out := p("initramfs.cpio.gz")
	if err := writeInitramfs(out, files, links); err != nil {
		return "", err
	}
	return out, nil
}

func writeInitramfs(out string, files []guestFile, links map[string]string) error {
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	// Fastest compression: the kernel's unpacking under TCG costs more
	// than the bytes saved by a higher level.
	zw, _ := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	c := &cpioWriter{w: zw}
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "opt", "opt/ember", "opt/ember/testdata"} {
		c.dir(d)
	}
	// The kernel opens /dev/console for init before devtmpfs is mounted.
	c.entry("dev/console", 0o020600, 5, 1, nil)
	for _, gf := range files {
		b, err := os.ReadFile(gf.src)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		c.file(gf.path, b)
	}
	for name, target := range links {
		c.symlink(name, target)
	}
	if err := c.close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return os.Rename(out+".tmp", out)
}

// isStatic reports whether path is an ELF executable without an
// interpreter (the guest has no ld.so).
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// goBinary is the go command to build with: the one on PATH (the
// Makefile's), else Go's usual place.
func goBinary() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// goShim is /bin/go in the guest: cmd/ember's tests run `go tool pprof`
// to check that pprof reads Ember's profiles, and a guest has no Go. It
// runs the prebuilt pprof for that and refuses anything else.
func goShim() {
	args := os.Args[1:]
	if len(args) < 2 || args[0] != "tool" || args[1] != "pprof" {
		fmt.Fprintf(os.Stderr, "go (emberkernels guest shim): only `go tool pprof` is available, not %q\n", strings.Join(args, " "))
		os.Exit(2)
	}
	cmd := exec.Command(guestPprof, args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintf(os.Stderr, "go tool pprof: %v\n", err)
		os.Exit(1)
	}
}
