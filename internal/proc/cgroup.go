package proc

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// CgroupID returns the cgroup v2 id of a cgroup directory, as
// bpf_get_current_cgroup_id() reports it: the inode number of the directory
// in the cgroup2 file system. path is absolute in the file system, or
// relative to the cgroup2 mount point ("/system.slice/x.service").
func CgroupID(path string) (uint64, error) {
	candidates := []string{path}
	if mnt, err := cgroup2Mount(); err == nil {
		candidates = append(candidates, filepath.Join(mnt, path))
	}
	for _, c := range candidates {
		var st syscall.Stat_t
		if err := syscall.Stat(c, &st); err == nil && st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			var fs syscall.Statfs_t
			if err := syscall.Statfs(c, &fs); err == nil && fs.Type != 0x63677270 /* CGROUP2_SUPER_MAGIC */ {
				continue
			}
			return st.Ino, nil
		}
	}
	return 0, fmt.Errorf("cgroup %s: not a cgroup v2 directory", path)
}

// cgroup2Mount finds where the cgroup2 file system is mounted.
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == "cgroup2" {
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("no cgroup2 mount")
}
