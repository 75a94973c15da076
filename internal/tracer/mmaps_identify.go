package tracer

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/symbolize/objfile"
)

// identify opens the file of m, a mapping recorded with a build ID instead
// of device and inode, and sets those from it: through map_files (the very
// file, while the process lives), else by its path in the process's root or
// on the host, kept only if its build ID is the recorded one (the process
// is gone, or map_files is not allowed).
func identify(pid int, m *proc.Mapping) (*os.File, error) {
	f, err := proc.OpenMapped(pid, m.Start, m.Limit)
	if err != nil && m.BuildID != "" && !m.Deleted() {
		f = nil
		for _, open := range []func() (*os.File, error){
			func() (*os.File, error) { return proc.OpenInRoot(pid, m.Path, proc.OpenOptions{}) },
			func() (*os.File, error) { return proc.OpenHost(m.Path, proc.OpenOptions{}) },
		} {
			g, gerr := open()
			if gerr != nil {
				err = errors.Join(err, gerr)
				continue
			}
			if buildID(g) == m.BuildID {
				f = g
				break
			}
			g.Close()
			err = errors.Join(err, fmt.Errorf("%s: not the build ID recorded", g.Name()))
		}
		if f != nil {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("identify the file of a recorded mapping: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("identify the file of a recorded mapping: %w", &os.PathError{Op: "fstat", Path: m.Path, Err: err})
	}
	m.Dev, m.Inode = st.Dev, st.Ino
	return f, nil
}

// buildID returns the GNU build ID of an ELF file, "" if it has none or is
// no ELF file.
func buildID(f *os.File) (id string) {
	defer func() {
		if recover() != nil {
			id = ""
		}
	}()
	ef, err := elf.NewFile(f)
	if err != nil {
		return ""
	}
	id, _ = objfile.BuildIDs(ef)
	return id
}
