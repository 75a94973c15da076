package proc

import (
	"strings"
)

// Container is what a process's cgroup v2 path says of the container it runs
// in. Container runtimes put each container in a cgroup named after its ID,
// and the kubelet puts each pod's containers under a cgroup named after the
// pod's UID, in one of two spellings per cgroup driver:
//
//	docker      /system.slice/docker-<id>.scope          (systemd driver)
//	            /docker/<id>                              (cgroupfs driver)
//	containerd  .../cri-containerd-<id>.scope, /<ns>/<id>
//	cri-o       .../crio-<id>.scope
//	podman      .../libpod-<id>.scope, /libpod_parent/libpod-<id>
//	kubepods    /kubepods.slice/kubepods-burstable.slice/
//	              kubepods-burstable-pod<uid, _ for ->.slice/<container>
//	            /kubepods/burstable/pod<uid>/<container>  (cgroupfs driver)
//
// A runtime's monitor (crio-conmon-<id>, libpod-conmon-<id>) is not in the
// container and gets no ID. Nested cgroups (a container's own init.scope,
// systemd inside a container) keep the innermost container's ID.
type Container struct {
	ID     string // 64 hex digits, "" when the path names no container
	PodUID string // the Kubernetes pod's UID, with dashes, "" outside a pod
}

// ParseContainer reads the container and pod of a cgroup v2 path as
// /proc/PID/cgroup gives it ("/kubepods.slice/..."). It never fails: a path
// that names neither gives the zero Container.
func ParseContainer(cgroup string) Container {
	var c Container
	for _, part := range strings.Split(cgroup, "/") {
		if id, ok := containerIDOf(part); ok {
			c.ID = id
		} else if uid, ok := podUIDOf(part); ok {
			c.PodUID = uid
		}
	}
	return c
}

// runtimePrefixes start a cgroup named after a container ID.
var runtimePrefixes = []string{"docker-", "cri-containerd-", "crio-", "libpod-", "containerd-", "nerdctl-", ""}

// containerIDOf returns the container ID one path component names:
// [runtime-]<64 hex>[.scope].
func containerIDOf(part string) (string, bool) {
	part = strings.TrimSuffix(part, ".scope")
	for _, p := range runtimePrefixes {
		if id, ok := strings.CutPrefix(part, p); ok && len(id) == 64 && isHex(id) {
			return id, true
		}
	}
	return "", false
}

// podUIDOf returns the pod UID one path component names: pod<uid> under the
// cgroupfs driver, kubepods[-<qos>]-pod<uid with _>.slice under systemd's.
func podUIDOf(part string) (string, bool) {
	part = strings.TrimSuffix(part, ".slice")
	i := strings.LastIndex(part, "pod")
	if i < 0 {
		return "", false
	}
	if i > 0 && !strings.HasPrefix(part, "kubepods") {
		return "", false
	}
	uid := strings.ReplaceAll(part[i+3:], "_", "-")
	if !isUID(uid) {
		return "", false
	}
	return uid, true
}

// isUID reports whether s is a UUID in its 8-4-4-4-12 hex form.
func isUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHexDigit(s[i]) {
				return false
			}
		}
	}
	return true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }
