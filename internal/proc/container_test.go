package proc

import (
	"strings"
	"testing"
)

// The cgroup paths of each runtime and cgroup driver, as /proc/PID/cgroup
// shows them on a host, give the container ID and the pod UID.
func TestParseContainer(t *testing.T) {
	const id = "3f1e5a0c9b7d4e2f8a6c1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f"
	const uid = "0e6b1e8d-4c2a-4f3b-9a1d-7c5e2b8f6a30"
	under := strings.ReplaceAll(uid, "-", "_")
	for _, c := range []struct {
		path string
		want Container
	}{
		// docker, systemd and cgroupfs drivers
		{"/system.slice/docker-" + id + ".scope", Container{ID: id}},
		{"/docker/" + id, Container{ID: id}},
		{"/system.slice/docker-" + id + ".scope/init.scope", Container{ID: id}},
		// kubepods with containerd and cri-o, systemd driver, every QoS class
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + under + ".slice/cri-containerd-" + id + ".scope", Container{ID: id, PodUID: uid}},
		{"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + under + ".slice/crio-" + id + ".scope", Container{ID: id, PodUID: uid}},
		{"/kubepods.slice/kubepods-pod" + under + ".slice/cri-containerd-" + id + ".scope", Container{ID: id, PodUID: uid}},
		// kubepods, cgroupfs driver
		{"/kubepods/burstable/pod" + uid + "/" + id, Container{ID: id, PodUID: uid}},
		{"/kubepods/pod" + uid + "/" + id, Container{ID: id, PodUID: uid}},
		// a pod's own cgroup, no container
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + under + ".slice", Container{PodUID: uid}},
		// podman, rootful and rootless; containerd without Kubernetes
		{"/machine.slice/libpod-" + id + ".scope", Container{ID: id}},
		{"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id + ".scope/container", Container{ID: id}},
		{"/libpod_parent/libpod-" + id, Container{ID: id}},
		{"/default/" + id, Container{ID: id}},
		// the runtimes' monitors are not in the container
		{"/machine.slice/libpod-conmon-" + id + ".scope", Container{}},
		{"/kubepods.slice/kubepods-pod" + under + ".slice/crio-conmon-" + id + ".scope", Container{PodUID: uid}},
		// no container
		{"/system.slice/nginx.service", Container{}},
		{"/user.slice/user-0.slice/session-1.scope", Container{}},
		{"/", Container{}},
		{"", Container{}},
		{"/kubepods.slice", Container{}},
		{"/docker/" + id[:63], Container{}},
		{"/docker/" + strings.ToUpper(id), Container{}},
		{"/podcast/pod" + uid[:35], Container{}},
		{"/x/notkubepods-pod" + under + ".slice", Container{}},
	} {
		if got := ParseContainer(c.path); got != c.want {
			t.Errorf("ParseContainer(%q) = %+v, want %+v", c.path, got, c.want)
		}
	}
}

func FuzzParseContainer(f *testing.F) {
	f.Add("/kubepods/burstable/pod0e6b1e8d-4c2a-4f3b-9a1d-7c5e2b8f6a30/3f1e5a0c9b7d4e2f8a6c1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f")
	f.Add("/system.slice/docker-3f1e5a0c9b7d4e2f8a6c1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f.scope")
	f.Fuzz(func(t *testing.T, path string) {
		c := ParseContainer(path)
		if c.ID != "" && (len(c.ID) != 64 || !strings.Contains(path, c.ID)) {
			t.Errorf("ID %q of %q", c.ID, path)
		}
		if c.PodUID != "" && !isUID(c.PodUID) {
			t.Errorf("pod UID %q of %q", c.PodUID, path)
		}
	})
}
