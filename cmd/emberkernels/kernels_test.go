package main

import (
	"bytes"
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
