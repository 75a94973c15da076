package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The files of a profiled process are the process's, not the host's: a
// container's /tmp/perf-1.map, a binary at /app/server, a library behind a
// symlink. Every one of them is opened here, in one way, because a plain
// open(2) of /proc/PID/root/PATH follows an absolute symlink inside the
// container out onto the host, blocks for ever on a FIFO planted where a
// file should be, and reads whatever size it finds. So:
//
//   - paths resolve inside the process's root: openat2(2) on /proc/PID/root
//     with RESOLVE_IN_ROOT (absolute symlinks and ".." stay in the root) and
//     RESOLVE_NO_MAGICLINKS (no /proc/self/fd/N jumps);
//   - O_NONBLOCK, so that opening a FIFO or a device returns at once, and
//     then only regular files are kept (fstat), so nothing is ever read
//     from one;
//   - sizes are checked against a bound the caller gives.
//
// openat2 is Linux 5.6, below every kernel Ember supports.

// ErrNotRegular is returned (wrapped) for a FIFO, device, socket or
// directory where a regular file was expected.
var ErrNotRegular = errors.New("not a regular file")

// ErrSymlink is returned (wrapped) when a file that must not be a symlink
// (a JIT map: the runtime writes it itself) is one.
var ErrSymlink = errors.New("a symlink")

// ErrTooLarge is returned (wrapped) for a file over the caller's bound.
var ErrTooLarge = errors.New("file too large")

// MaxObjectBytes bounds a binary or library opened for symbols.
const MaxObjectBytes = 4 << 30

// OpenOptions modify OpenInRoot.
type OpenOptions struct {
	// MaxBytes refuses larger files; 0: MaxObjectBytes.
	MaxBytes int64
	// NoFollow refuses a path whose last component is a symlink (one that
	// resolves inside the root is refused too).
	NoFollow bool
}

// procRoot is where /proc is mounted.
const procRoot = "/proc"

// MaxPerfMapBytes bounds a JIT's perf map (symbolize caps its lines too).
const MaxPerfMapBytes = 512 << 20

// PerfMapPath is where a JIT runtime writes its symbols (perf's
// jit-interface convention), named by the PID the process sees: nspid, not
// the host's PID, in a PID namespace (Process.NSPID).
func PerfMapPath(nspid int) string { return fmt.Sprintf("/tmp/perf-%d.map", nspid) }

// OpenPerfMap opens the perf map of process pid, whose PID in its own
// namespace is nspid, inside its root. The runtime writes the file itself,
// so a symlink there is refused along with FIFOs and devices.
func OpenPerfMap(pid, nspid int) (*os.File, error) {
	return OpenInRoot(pid, PerfMapPath(nspid), OpenOptions{NoFollow: true, MaxBytes: MaxPerfMapBytes})
}

// OpenInRoot opens path, absolute in process pid's view, inside the process's
// root directory (/proc/PID/root), as the package comment says: never out of
// the root, never blocking, regular files only, at most opts.MaxBytes.
func OpenInRoot(pid int, path string, opts OpenOptions) (*os.File, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("open %q in process %d: not an absolute path", path, pid)
	}
	rootName := fmt.Sprintf("%s/%d/root", procRoot, pid)
	root, err := unix.Open(rootName, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s in process %d: %w", path, pid, &os.PathError{Op: "open", Path: rootName, Err: err})
	}
	defer unix.Close(root)
	// Errors name rootName+path: the file, and in which process's root.
	return openat2Regular(root, path, unix.RESOLVE_IN_ROOT|unix.RESOLVE_NO_MAGICLINKS, rootName+path, opts)
}

// OpenHost opens a host path by the same rules (no magic links, never
// blocking, regular files only): for a file named by a process's mapping
// that is looked for on the host too.
func OpenHost(path string, opts OpenOptions) (*os.File, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("open %q: not an absolute path", path)
	}
	f, err := openat2Regular(unix.AT_FDCWD, path, unix.RESOLVE_NO_MAGICLINKS, path, opts)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}

// OpenMapped opens the very file mapped at [start, limit) in process pid
// through /proc/PID/map_files, which reaches deleted and memfd files while
// the process lives and resolves no path at all. The kernel allows it with
// CAP_CHECKPOINT_RESTORE (Linux 5.9) or CAP_SYS_ADMIN only.
func OpenMapped(pid int, start, limit uint64) (*os.File, error) {
	return openMapFile(fmt.Sprintf("%s/%d/map_files/%x-%x", procRoot, pid, start, limit))
}

// openMappingByPath opens the file of m by its path: inside the process's
// root (which needs ptrace access to it, CAP_SYS_PTRACE for another user's
// process), then on the host. It is kept only if it is the file mapped: the
// same inode, and on the host the same device too (an overlayfs reports
// its own device, where the mapping shows the layer's). A deleted file's
// path names another file, or none.
func openMappingByPath(pid int, m *Mapping) (*os.File, error) {
	if m.Deleted() || !filepath.IsAbs(m.Path) {
		return nil, fmt.Errorf("%s: no path to open it by", m.Path)
	}
	same := func(f *os.File, dev bool) bool {
		var st unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st) != nil || st.Ino != m.Inode || (dev && st.Dev != m.Dev) {
			f.Close()
			return false
		}
		return true
	}
	f, err1 := OpenInRoot(pid, m.Path, OpenOptions{})
	if err1 == nil {
		if same(f, false) {
			return f, nil
		}
		err1 = fmt.Errorf("%s in process %d: not the file mapped (replaced since)", m.Path, pid)
	}
	f, err2 := OpenHost(m.Path, OpenOptions{})
	if err2 == nil {
		if same(f, true) {
			return f, nil
		}
		err2 = fmt.Errorf("%s on the host: not the file process %d maps", m.Path, pid)
	}
	return nil, errors.Join(err1, err2)
}

// openMapFile opens a map_files entry: a magic link by nature (so not
// through openat2 with RESOLVE_NO_MAGICLINKS), to the file the kernel has
// mapped, never blocking and regular files only (a mapped device is not
// read).
func openMapFile(name string) (*os.File, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return keepRegular(fd, name, OpenOptions{})
}

// OpenMappedFile opens the file mapped at m in process pid: the very file,
// through map_files, or else the file by m's path inside the process's root
// and then on the host, kept only if it is the same inode (openMappingByPath).
// Table.Open tries the descriptor held since the process was seen first.
func OpenMappedFile(pid int, m *Mapping) (*os.File, error) {
	f, err1 := OpenMapped(pid, m.Start, m.Limit)
	if err1 == nil {
		return f, nil
	}
	f, err2 := openMappingByPath(pid, m)
	if err2 != nil {
		return nil, errors.Join(err1, err2)
	}
	return f, nil
}

// openat2Regular opens path relative to dirfd with resolve flags, then
// keeps it only if it is a regular file within the size bound.
func openat2Regular(dirfd int, path string, resolve uint64, name string, opts OpenOptions) (*os.File, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: resolve,
	}
	if opts.NoFollow {
		how.Flags |= unix.O_NOFOLLOW
	}
	var fd int
	var err error
	// EAGAIN: a rename or mount raced with a RESOLVE_IN_ROOT walk, which the
	// kernel refuses rather than risk an escape (fs/namei.c); try again.
	for range 4 {
		if fd, err = unix.Openat2(dirfd, path, &how); err != unix.EAGAIN && err != unix.EINTR {
			break
		}
	}
	switch {
	case err == unix.ELOOP && opts.NoFollow:
		return nil, fmt.Errorf("%s: %w", name, ErrSymlink)
	case err == unix.ENOSYS:
		return nil, fmt.Errorf("%s: openat2 is not available (Linux 5.6, or a seccomp filter refuses it), and nothing else opens a process's files safely: %w", name, errors.ErrUnsupported)
	case err != nil:
		return nil, &os.PathError{Op: "openat2", Path: name, Err: err}
	}
	return keepRegular(fd, name, opts)
}

// keepRegular returns fd as a blocking *os.File if it is a regular file
// within the bound, and closes it otherwise.
func keepRegular(fd int, name string, opts OpenOptions) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w (%s)", name, ErrNotRegular, fileType(st.Mode))
	}
	limit := opts.MaxBytes
	if limit <= 0 {
		limit = MaxObjectBytes
	}
	if st.Size > limit {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %d bytes, over %d: %w", name, st.Size, limit, ErrTooLarge)
	}
	// A regular file reads the same either way; a blocking descriptor keeps
	// os.File from trying the poller with it.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symlink"
	}
	return fmt.Sprintf("mode %#o", mode&unix.S_IFMT)
}
