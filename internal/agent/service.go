package agent

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/emberprof/ember/internal/proc"
)

// ServiceNamer names the service a process belongs to, for the
// service_name label, in the order `ember agent` documents: a configured
// rule (executable base name, then comm, then the longest matching cgroup
// path prefix), the container (ID from the cgroup), the systemd unit, the
// executable's name. A container comes before the unit that holds it: a
// container started under containerd.service is the container, not
// containerd.
type ServiceNamer struct {
	// Mapping maps an executable base name, a comm, or a cgroup path prefix
	// (starting with "/", matched whole path components at a time) to a
	// service name. ParseServiceRules checks the --service rules.
	Mapping map[string]string
}

// ParseServiceRules parses --service rules, each name=service: name is an
// executable's base name or a comm (no "/"), or an absolute cgroup path
// prefix; service is non-empty. A name given twice is an error, as is a
// prefix that differs from another only by a trailing "/".
func ParseServiceRules(rules []string) (map[string]string, error) {
	out := make(map[string]string, len(rules))
	for _, r := range rules {
		k, v, ok := strings.Cut(r, "=")
		switch {
		case !ok || k == "" || v == "":
			return nil, fmt.Errorf("--service %q: want name=service (an executable, comm or /cgroup/prefix, and a service name)", r)
		case strings.Contains(k, "/") && !strings.HasPrefix(k, "/"):
			return nil, fmt.Errorf("--service %q: %q is neither an executable or comm name (no /) nor an absolute cgroup path", r, k)
		case strings.ContainsFunc(v, func(c rune) bool { return c < ' ' || c == 0x7f }):
			return nil, fmt.Errorf("--service %q: the service name has control characters", r)
		}
		if strings.HasPrefix(k, "/") && k != "/" {
			k = strings.TrimRight(k, "/")
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--service: %q is given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

// systemd: /system.slice/nginx.service, /user.slice/.../app.service
var systemdUnit = regexp.MustCompile(`/([^/]+)\.service(?:/|$)`)

// Name returns the service of process p.
func (n *ServiceNamer) Name(p *proc.Process) string {
	if p == nil {
		return "unknown"
	}
	exe := filepath.Base(strings.TrimSuffix(p.Exe, " (deleted)"))
	if s, ok := n.Mapping[exe]; ok && exe != "" {
		return s
	}
	if s, ok := n.Mapping[p.Comm]; ok && p.Comm != "" {
		return s
	}
	if s, ok := n.cgroupRule(p.Cgroup); ok {
		return s
	}
	if id := p.Container.ID; id != "" {
		return "container/" + id[:min(12, len(id))]
	}
	if m := systemdUnit.FindAllStringSubmatch(p.Cgroup, -1); m != nil {
		return m[len(m)-1][1]
	}
	if exe != "" && exe != "." {
		return exe
	}
	if p.Comm != "" {
		return p.Comm
	}
	return "unknown"
}

// cgroupRule returns the service of the longest cgroup prefix rule that
// covers cgroup: the cgroup itself or one of its ancestors, so that
// /kubepods/podX does not cover /kubepods/podXY. Longest wins whatever the
// order of the rules, so overlapping rules give one answer.
func (n *ServiceNamer) cgroupRule(cgroup string) (string, bool) {
	best, svc := -1, ""
	for prefix, s := range n.Mapping {
		if !strings.HasPrefix(prefix, "/") || len(prefix) <= best {
			continue
		}
		if cgroup == prefix || prefix == "/" || strings.HasPrefix(cgroup, prefix+"/") {
			best, svc = len(prefix), s
		}
	}
	return svc, best >= 0
}
