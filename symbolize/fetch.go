package symbolize

import (
	"fmt"
	"os"
	"strings"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/pprof"
	"github.com/emberprof/ember/symbolize/debuginfod"
	"github.com/emberprof/ember/symbolize/objfile"
)

// DebugSource supplies, by build ID, the debug files and executables that are
// not on this machine: a *debuginfod.Client. Neither method may wait for the
// network: symbolizing runs on the agent's drain path, so a missing file is
// requested, the profile at hand keeps what it has, and a later profile gets
// the file once it has arrived.
type DebugSource interface {
	// Cached returns the local path of the file of kind k for buildID, or "".
	Cached(buildID string, k debuginfod.Kind) string
	// Request asks for the file to be fetched in the background.
	Request(buildID string, k debuginfod.Kind)
}

// fetchedDebugFile returns the debug file src has for buildID, or nil after
// asking src to fetch it.
func fetchedDebugFile(src DebugSource, buildID string) (*Object, string) {
	if buildID == "" {
		return nil, ""
	}
	p := src.Cached(buildID, debuginfod.Debuginfo)
	if p == "" {
		src.Request(buildID, debuginfod.Debuginfo)
		return nil, ""
	}
	// openDebugFile checks the build ID again: the cache is shared with
	// other clients.
	if o := openDebugFile(p, buildID, 0, false); o != nil {
		return o, p
	}
	return nil, ""
}

// openObject indexes f, with the symbolizer's debug directories and source.
func (s *Symbolizer) openObject(f *objfile.File, name string) (*Object, error) {
	return newObjectFile(f, name, s.opts.DebugDirs, s.opts.DebugSource)
}

// openFetched opens the executable of m from the debug source when m's own
// file could not be opened (openErr): the process has gone and its file with
// it, or the file is out of reach. Only a mapping whose build ID is known
// can be fetched.
func (s *Symbolizer) openFetched(m *profile.Mapping, openErr error) (*os.File, error) {
	src := s.opts.DebugSource
	if src == nil || m.BuildID == "" {
		return nil, openErr
	}
	p := src.Cached(m.BuildID, debuginfod.Executable)
	if p == "" {
		src.Request(m.BuildID, debuginfod.Executable)
		return nil, fmt.Errorf("%w (executable requested from debuginfod)", openErr)
	}
	return os.Open(p)
}

// stale reports whether e was opened without a debug file that the debug
// source has since fetched, so that it must be opened again.
func (s *Symbolizer) stale(e *cacheEntry) bool {
	o := e.obj
	return o.awaitsDebug && s.opts.DebugSource != nil &&
		s.opts.DebugSource.Cached(o.buildID, debuginfod.Debuginfo) != ""
}

// Prefetch opens the objects of p's unsymbolized mappings, which asks the
// debug source for the files that are missing, and fills nothing. `record`
// calls it, waits a bounded time for the fetches, then symbolizes.
func (s *Symbolizer) Prefetch(p *profile.Profile) {
	if s.opts.DebugSource == nil {
		return
	}
	want := make(map[*profile.Mapping]bool)
	for _, l := range p.Location {
		if len(l.Line) == 0 && l.Mapping != nil {
			want[l.Mapping] = true
		}
	}
	for _, m := range p.Mapping {
		if !want[m] || m.File == "" || m.File == pprof.KernelFile || strings.HasPrefix(m.File, "[") || isJITNames(m.File) {
			continue
		}
		if e, err := s.object(m, source{s.opts.Open, s.opts.OpenObject}); err == nil {
			s.cache.release(e)
		}
	}
}
