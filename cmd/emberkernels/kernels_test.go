package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Versions ordered as dpkg orders them (dpkg --compare-versions).
func TestCompareDebVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"6.12.117-1", "6.12.107-1", 1},
		{"7.3.4-1~bpo13+1", "7.3~rc7-1~exp1", 1},
		{"7.3~rc7-1~exp1", "7.3-1", -1},
		{"6.18.15-1~bpo13+1", "6.18.15-1", -1},
		{"5.10.223-1", "5.10.223-1", 0},
		{"1:1.0-1", "2.0-1", 1},
		{"1.0a-1", "1.0-1", 1},
	} {
		got := compareDebVersions(c.a, c.b)
		if (got > 0) != (c.want > 0) || (got < 0) != (c.want < 0) {
			t.Errorf("compare(%s, %s) = %d, want sign of %d", c.a, c.b, got, c.want)
		}
	}
}

func TestParsePolicyNewest(t *testing.T) {
	out := []byte(`linux-image-7.3.4+deb13-cloud-amd64:
  Installed: (none)
  Candidate: 7.3.4-1~bpo13+1
  Version table:
     7.3.4-1~bpo13+1 100
        100 http://deb.debian.org/debian trixie-backports/main amd64 Packages
linux-image-7.3-cloud-amd64:
  Installed: (none)
  Candidate: 7.3~rc7-1~exp1
  Version table:
     7.3~rc7-1~exp1 1
          1 http://deb.debian.org/debian experimental/main amd64 Packages
linux-image-7.2.13+deb14-cloud-amd64:
  Installed: (none)
  Candidate: 7.2.13-1
  Version table:
 *** 7.2.13-1 500
        500 http://deb.debian.org/debian sid/main amd64 Packages
        100 /var/lib/dpkg/status
`)
	vs := parsePolicy(out)
	if len(vs) != 3 {
		t.Fatalf("parsed %d versions, want 3: %+v", len(vs), vs)
	}
	var l kernelLine
	for _, k := range kernelLines {
		if k.Name == "7.x" {
			l = k
		}
	}
	v, err := l.newest(vs)
	if err != nil || v.Version != "7.3.4-1~bpo13+1" || v.Suite != "trixie-backports" {
		t.Errorf("newest 7.x = %+v, %v", v, err)
	}
}

// The initramfs is newc: a header of 13 hex fields, name and data 4-aligned.
func TestCpioNewc(t *testing.T) {
	var b bytes.Buffer
	c := &cpioWriter{w: &b}
	c.file("init", []byte("abc"))
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	if s[:6] != "070701" || s[110:115] != "init\x00" || s[116:119] != "abc" || b.Len()%4 != 0 {
		t.Errorf("bad newc archive: %q", s)
	}
}

// A full run keeps the files of the kernels it used and removes the rest.
func TestPrune(t *testing.T) {
	a, err := newPrivateApt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{
		"debs/linux-image-7.3.4+deb13-cloud-amd64_7.3.4-1~bpo13+1_amd64.deb":  true,
		"debs/linux-binary-7.3.4+deb13-cloud-amd64_7.3.4-1~bpo13+1_amd64.deb": true,
		"vmlinuz/linux-image-7.3.4+deb13-cloud-amd64_7.3.4-1~bpo13+1":         true,
		"debs/linux-image-7.2.9+deb13-cloud-amd64_7.2.9-1_amd64.deb":          false,
		"vmlinuz/linux-image-7.2.9+deb13-cloud-amd64_7.2.9-1":                 false,
	}
	if err := os.MkdirAll(filepath.Join(a.dir, "vmlinuz"), 0o755); err != nil {
		t.Fatal(err)
	}
	for f := range files {
		if err := os.WriteFile(filepath.Join(a.dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a.prune([]kernel{{
		pkg:     pkgVersion{"linux-image-7.3.4+deb13-cloud-amd64", "7.3.4-1~bpo13+1", "trixie-backports"},
		vmlinuz: filepath.Join(a.dir, "vmlinuz", "linux-image-7.3.4+deb13-cloud-amd64_7.3.4-1~bpo13+1"),
	}})
	for f, keep := range files {
		if _, err := os.Stat(filepath.Join(a.dir, f)); (err == nil) != keep {
			t.Errorf("%s: kept %v, want %v", f, err == nil, keep)
		}
	}
}
