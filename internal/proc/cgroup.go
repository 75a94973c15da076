package proc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrCgroupV1Only says the host mounts no cgroup v2 hierarchy: Ember's cgroup
// filter asks the kernel whether a task is under a cgroup of the unified
// hierarchy, which a v1-only host does not have.
var ErrCgroupV1Only = errors.New("--cgroup needs cgroup v2, and this host mounts only cgroup v1 hierarchies (boot with systemd.unified_cgroup_hierarchy=1, or mount cgroup2)")

// CgroupDir returns the directory of a cgroup v2, for the in-kernel subtree
// filter. path is absolute in the file system ("/sys/fs/cgroup/unified/x"),
// or relative to the cgroup2 mount point, with or without a leading slash
// ("/system.slice/x.service", "kubepods.slice"), as /proc/PID/cgroup shows
// it. On a hybrid host the cgroup2 mount is /sys/fs/cgroup/unified; on a
// host with only cgroup v1 the error is ErrCgroupV1Only.
func CgroupDir(path string) (string, error) {
	mounts, v1, err := cgroupMounts()
	if err != nil {
		return "", err
	}
	if len(mounts) == 0 {
		if v1 {
			return "", ErrCgroupV1Only
		}
		return "", fmt.Errorf("--cgroup needs cgroup v2, and no cgroup2 file system is mounted")
	}
	var candidates []string
	if filepath.IsAbs(path) {
		candidates = append(candidates, filepath.Clean(path))
	}
	for _, m := range mounts {
		candidates = append(candidates, filepath.Join(m, path))
	}
	for _, c := range candidates {
		var fs unix.Statfs_t
		if err := unix.Statfs(c, &fs); err != nil {
			continue
		}
		if st, err := os.Stat(c); err != nil || !st.IsDir() {
			continue
		}
		switch fs.Type {
		case unix.CGROUP2_SUPER_MAGIC:
			return c, nil
		case unix.CGROUP_SUPER_MAGIC:
			return "", fmt.Errorf("cgroup %s is in a cgroup v1 hierarchy; --cgroup takes cgroup v2 directories (under %s)", c, strings.Join(mounts, ", "))
		}
	}
	return "", fmt.Errorf("cgroup %s: no such cgroup v2 directory (under %s)", path, strings.Join(mounts, ", "))
}

// mountsFile is the mount table read; tests point it at a v1-only host's.
var mountsFile = "/proc/self/mounts"

// cgroupMounts returns where cgroup2 file systems are mounted, and whether
// any cgroup v1 hierarchy is.
func cgroupMounts() (v2 []string, v1 bool, err error) {
	f, err := os.Open(mountsFile)
	if err != nil {
		return nil, false, fmt.Errorf("find the cgroup2 mount: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		switch fields[2] {
		case "cgroup2":
			v2 = append(v2, unescapeMount(fields[1]))
		case "cgroup":
			v1 = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, false, fmt.Errorf("find the cgroup2 mount: %w", err)
	}
	return v2, v1, nil
}

// unescapeMount undoes the octal escapes of /proc/self/mounts (space is
// \040, tab \011, newline \012, backslash \134: fs/proc_namespace.c).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
