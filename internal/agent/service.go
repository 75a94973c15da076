package agent

import (
	"path/filepath"
	"regexp"
	"strings"

	"github.com/emberprof/ember/internal/proc"
)

// ServiceNamer names the service a process belongs to, for the
// service_name label, in the order `ember agent` documents: a configured
// mapping, the systemd unit, the container (name or ID from the cgroup), the
// executable's name.
type ServiceNamer struct {
	// Mapping maps an executable base name, a comm, or a cgroup path prefix
	// to a service name; the first match in that order wins.
	Mapping map[string]string
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
	for prefix, s := range n.Mapping {
		if strings.HasPrefix(prefix, "/") && strings.HasPrefix(p.Cgroup, prefix) {
			return s
		}
	}
	if id := p.Container.ID; id != "" {
		return "container/" + id[:12]
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
