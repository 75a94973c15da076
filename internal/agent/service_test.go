package agent

import (
	"testing"

	"github.com/emberprof/ember/internal/proc"
)

func TestServiceName(t *testing.T) {
	n := &ServiceNamer{Mapping: map[string]string{"java": "billing", "/kubepods/burstable/podX": "pod-x"}}
	id := "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b"
	for _, c := range []struct {
		p    proc.Process
		want string
	}{
		{proc.Process{Exe: "/usr/bin/java", Comm: "java", Cgroup: "/system.slice/x.service"}, "billing"},
		{proc.Process{Exe: "/opt/a", Comm: "a", Cgroup: "/kubepods/burstable/podX/" + id}, "pod-x"},
		{proc.Process{Exe: "/usr/sbin/nginx", Comm: "nginx", Cgroup: "/system.slice/nginx.service"}, "nginx"},
		{proc.Process{Exe: "/app/server", Comm: "server", Cgroup: "/system.slice/docker-" + id + ".scope"}, "container/" + id[:12]},
		{proc.Process{Exe: "/usr/bin/bash", Comm: "bash", Cgroup: "/user.slice/user-0.slice/session-1.scope"}, "bash"},
		{proc.Process{Exe: "/tmp/x (deleted)", Comm: "x"}, "x"},
		{proc.Process{Comm: "kworker/0:1"}, "kworker/0:1"},
	} {
		c.p.Container = proc.ParseContainer(c.p.Cgroup) // as Table.Add sets it
		if got := n.Name(&c.p); got != c.want {
			t.Errorf("Name(%+v) = %q, want %q", c.p, got, c.want)
		}
	}
	if got := n.Name(nil); got != "unknown" {
		t.Errorf("Name(nil) = %q", got)
	}
}

// Overlapping cgroup rules: the longest prefix wins, whatever the map's
// order, and a prefix covers whole path components only.
func TestServiceLongestPrefix(t *testing.T) {
	rules, err := ParseServiceRules([]string{"/kubepods=all-pods", "/kubepods/burstable/=burstable", "/kubepods/burstable/podX=pod-x", "/=root"})
	if err != nil {
		t.Fatal(err)
	}
	n := &ServiceNamer{Mapping: rules}
	for cg, want := range map[string]string{
		"/kubepods/burstable/podX/c1": "pod-x",
		"/kubepods/burstable/podX":    "pod-x",
		"/kubepods/burstable/podXY/c": "burstable",
		"/kubepods/besteffort/podZ":   "all-pods",
		"/kubepodsfoo/a":              "root",
		"/system.slice/a.service":     "root",
	} {
		for range 20 { // map order changes from call to call
			if got := n.Name(&proc.Process{Exe: "/bin/x", Comm: "x", Cgroup: cg}); got != want {
				t.Fatalf("cgroup %s: %q, want %q", cg, got, want)
			}
		}
	}
	for _, bad := range [][]string{{"java"}, {"=svc"}, {"java="}, {"a/b=svc"}, {"java=a", "java=b"}, {"/a/=x", "/a=y"}, {"x=a\nb"}} {
		if _, err := ParseServiceRules(bad); err == nil {
			t.Errorf("ParseServiceRules(%q) accepted", bad)
		}
	}
}
