package symbolize

import (
	"fmt"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/symbolize/objfile"
)

// symbolizeVDSO names the frames of a [vdso] mapping from the vDSO image in
// Ember's own memory (objfile.OwnVDSO): the kernel maps the same image
// into every native process, so its symbols (__vdso_clock_gettime, as perf
// names them) are every process's. A mapping of another size is another
// ABI's image (a 32-bit process) and keeps its addresses, with an error.
func (s *Symbolizer) symbolizeVDSO(m *profile.Mapping, locs []*profile.Location, fs *funcSet) error {
	s.vdsoOnce.Do(func() {
		// The image as the unwind-table builder has it too: read from
		// memory and parsed once per run (objfile.OwnVDSO).
		f, err := objfile.OwnVDSO()
		if err != nil {
			s.vdsoErr = err
			return
		}
		s.vdso, s.vdsoErr = newObjectFile(f, objfile.VDSOPath, nil, nil)
		s.vdsoSize = uint64(len(f.Image()))
	})
	if s.vdsoErr != nil {
		return fmt.Errorf("symbolize [vdso]: %w", s.vdsoErr)
	}
	if size := m.Limit - m.Start; size != s.vdsoSize {
		return fmt.Errorf("symbolize [vdso]: a mapping of %d bytes, Ember's vDSO has %d: another ABI's image", size, s.vdsoSize)
	}
	o := s.vdso
	if m.BuildID == "" {
		m.BuildID = o.buildID
	}
	return fs.fillFrom(o, m, locs, nil)
}
