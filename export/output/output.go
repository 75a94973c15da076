package output

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/emberprof/ember/export/atomicfile"
	"github.com/emberprof/ember/export/flamegraph"
	"github.com/emberprof/ember/export/folded"
	"github.com/google/pprof/profile"
)

// ErrFormat is returned for a file name whose extension names no supported
// form.
var ErrFormat = errors.New("unsupported output format")

// Options control WriteFile.
type Options struct {
	// SampleType selects the sample type of the forms that show one
	// (folded, SVG) and the one an HTML page shows first: a type ("cpu"), a
	// type and unit ("offcpu/nanoseconds") or an index. "" is the profile's
	// default: its DefaultSampleType, else its last type, which for Ember's
	// profiles is cpu (on-CPU), offcpu (off-CPU) or wall (wall mode).
	SampleType string
	// Title heads flame graphs; "" is "Flame Graph".
	Title string
	// NoProcess leaves out the root frame named after the process (the comm
	// label) that flame graphs and folded stacks otherwise start with, as
	// perf's do.
	NoProcess bool
	// GroupBy roots every stack at a frame naming its value of this label,
	// so that the graph groups by it ("cause": why off-CPU time was spent).
	GroupBy string
}

// Format is a form of output.
type Format int

const (
	PProf  Format = iota + 1 // gzipped pprof protobuf
	HTML                     // interactive flame graph page
	SVG                      // static flame graph
	Folded                   // folded stacks
	OTLP                     // OpenTelemetry profiles: an ExportProfilesServiceRequest in protobuf
)

// formats maps file name endings to forms; longer endings first.
var formats = []struct {
	ext    string
	format Format
}{
	{".otlp", OTLP},
	{".pb.gz", PProf},
	{".pprof", PProf},
	{".pb", PProf},
	{".html", HTML},
	{".htm", HTML},
	{".svg", SVG},
	{".folded", Folded},
	{".txt", Folded},
}

func supportedList() string {
	var exts []string
	for _, f := range formats {
		exts = append(exts, f.ext)
	}
	return strings.Join(exts, ", ")
}

// FormatOf returns the form path's extension picks, or an error wrapping
// ErrFormat that names the supported extensions.
func FormatOf(path string) (Format, error) {
	name := strings.ToLower(filepath.Base(path))
	for _, f := range formats {
		if strings.HasSuffix(name, f.ext) && len(name) > len(f.ext) {
			return f.format, nil
		}
	}
	return 0, fmt.Errorf("%w: %q (use one of %s)", ErrFormat, path, supportedList())
}

// Supported checks an output name before any work is done, so that a
// recording does not end in an unwritable file.
func Supported(path string) error {
	_, err := FormatOf(path)
	return err
}

// Write writes p to w in form f.
func Write(w io.Writer, f Format, p *profile.Profile, opts Options) error {
	switch f {
	case PProf:
		return p.Write(w)
	case HTML:
		return flamegraph.WriteHTML(w, p, fgOptions(opts))
	case SVG:
		return flamegraph.WriteSVG(w, p, fgOptions(opts))
	case Folded:
		return folded.Write(w, p, folded.Options{SampleType: opts.SampleType, ProcessRoot: !opts.NoProcess, GroupBy: opts.GroupBy})
	case OTLP:
		return writeOTLP(w, p)
	}
	return fmt.Errorf("%w: format %d", ErrFormat, f)
}

func fgOptions(opts Options) flamegraph.Options {
	return flamegraph.Options{Title: opts.Title, SampleType: opts.SampleType, ProcessRoot: !opts.NoProcess, GroupBy: opts.GroupBy}
}

// WriteFile writes p to path in the form its extension picks: .pb.gz, .pprof
// or .pb (gzipped pprof), .html, .svg, .folded or .txt, .otlp (OTLP protobuf). The file is written
// under a temporary name and renamed into place, so that a reader never sees
// half a file and a failure leaves no file behind.
func WriteFile(path string, p *profile.Profile, opts Options) error {
	f, err := FormatOf(path)
	if err != nil {
		return err
	}
	if p == nil {
		return errors.New("output: nil profile")
	}
	return writeAtomic(path, func(w io.Writer) error { return Write(w, f, p, opts) })
}

// writeAtomic writes a profile file whole (atomicfile.Write), readable by
// all as the files of other tools are.
func writeAtomic(path string, write func(io.Writer) error) error {
	if err := atomicfile.Write(path, 0o644, write); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	return nil
}

// MaxProfileSize caps the size of a profile file ReadProfile reads.
const MaxProfileSize = 2 << 30

// ReadProfile reads a pprof profile (gzipped or not, or one of the legacy
// forms google/pprof parses) from path, for the commands that convert or
// compare profiles.
func ReadProfile(path string) (p *profile.Profile, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > MaxProfileSize {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d a profile may have", path, fi.Size(), MaxProfileSize)
	}
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("%s: malformed profile: %v", path, r)
		}
	}()
	p, err = profile.Parse(io.LimitReader(f, MaxProfileSize))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}
