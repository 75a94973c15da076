package filesink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/emberprof/ember/export/atomicfile"
	"github.com/emberprof/ember/export/output"
	"github.com/emberprof/ember/export/sink"
)

// Defaults for a zero Config field.
const (
	DefaultMaxBytes = 1 << 30
	DefaultMaxAge   = 7 * 24 * time.Hour
)

// ErrClosed is returned by Enqueue after Close.
var ErrClosed = errors.New("filesink: sink is closed")

// Config configures a Sink. Only Dir is required.
type Config struct {
	// Dir is the directory, created if missing.
	Dir string
	// MaxBytes bounds the total size of the sink's files; negative means
	// no bound.
	MaxBytes int64
	// MaxAge is how long a file is kept, by the time in its name; negative
	// means for ever.
	MaxAge time.Duration
	// Ext picks the form of the files by extension, as `ember record -o`
	// does: ".pb.gz" (the default), ".html", ".svg" or ".folded".
	Ext string
	// Labels are static labels (hostname, --label) written, with each
	// profile's own, into the profile's comments.
	Labels map[string]string
	// Registerer receives the sink's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Logger receives a line per failed write or removal; nil discards.
	Logger *slog.Logger

	now func() time.Time // for tests
}

// Sink writes profiles to files in a directory. Its methods may be called
// concurrently.
type Sink struct {
	cfg    Config
	format output.Format
	m      *metrics

	mu     sync.Mutex
	files  []file // the sink's files, oldest first
	total  int64  // their total size
	closed bool
}

var _ sink.Sink = (*Sink)(nil)

type file struct {
	name string
	time time.Time
	size int64
}

// The layout of the time that starts a file name, and what a whole name
// looks like.
const timeLayout = "20060102T150405.000Z"

var (
	nameRE    = regexp.MustCompile(`^\d{8}T\d{6}\.\d{3}Z_[A-Za-z0-9._-]+\.(pb\.gz|html|svg|folded)$`)
	tmpPrefix = ".ember-tmp-"
)

// New returns a Sink writing to cfg.Dir. It creates the directory, removes
// temporary files a previous run left, and applies the bounds to the files
// already there.
func New(cfg Config) (*Sink, error) {
	if cfg.Dir == "" {
		return nil, errors.New("filesink: no directory")
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Ext == "" {
		cfg.Ext = ".pb.gz"
	}
	format, err := output.FormatOf("profile" + cfg.Ext)
	if err != nil || !nameRE.MatchString(fileName(time.Time{}, "s", "n", cfg.Ext)) {
		return nil, fmt.Errorf("filesink: files cannot be %q (use .pb.gz, .html, .svg or .folded)", cfg.Ext)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("filesink: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("filesink: registering metrics: %w", err)
	}
	s := &Sink{cfg: cfg, format: format, m: m}
	if err := s.scan(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.rotateLocked("")
	s.mu.Unlock()
	return s, nil
}

// scan indexes the sink's files in the directory.
func (s *Sink) scan() error {
	ents, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("filesink: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) && e.Type().IsRegular() {
			_ = os.Remove(filepath.Join(s.cfg.Dir, name))
			continue
		}
		t, ok := parseName(name)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		s.files = append(s.files, file{name: name, time: t, size: info.Size()})
		s.total += info.Size()
	}
	slices.SortFunc(s.files, compareFiles)
	s.m.dir(s.total, len(s.files))
	return nil
}

func compareFiles(a, b file) int {
	if c := a.time.Compare(b.time); c != 0 {
		return c
	}
	return cmp.Compare(a.name, b.name)
}

// parseName returns the time in a file name the sink writes.
func parseName(name string) (time.Time, bool) {
	if !nameRE.MatchString(name) {
		return time.Time{}, false
	}
	t, err := time.Parse(timeLayout, name[:len(timeLayout)])
	return t, err == nil
}

// FileName returns the name, without a collision suffix, under which the
// sink stores a profile of service and kind name that ends at t.
func FileName(t time.Time, service, name string) string {
	return fileName(t, service, name, ".pb.gz")
}

func fileName(t time.Time, service, name, ext string) string {
	return t.UTC().Format(timeLayout) + "_" + safe(service) + "_" + safe(name) + ext
}

// safe makes s usable in a file name: letters, digits, '.', '_' and '-'
// stay, runs of anything else become one '-', and the length is capped.
func safe(s string) string {
	const maxLen = 64
	var b strings.Builder
	dash := false
	for _, c := range s {
		ok := c == '.' || c == '_' || c == '-' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		switch {
		case ok:
			b.WriteRune(c)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= maxLen {
			break
		}
	}
	out := strings.Trim(b.String(), ".-")
	if out == "" {
		return "unknown"
	}
	return out
}

// Enqueue writes p to its file and applies the bounds.
func (s *Sink) Enqueue(p sink.Profile) error {
	_, err := s.Write(p)
	return err
}

// Write writes p to its file, applies the bounds, and returns the file's
// path.
func (s *Sink) Write(p sink.Profile) (string, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return "", ErrClosed
	}
	if p.Profile == nil {
		s.m.failed()
		return "", errors.New("filesink: no profile data")
	}
	t := p.EndTime(s.cfg.now())
	tmp, size, err := s.writeTemp(&p)
	if err != nil {
		s.m.failed()
		s.cfg.Logger.Warn("filesink: write failed", "service", p.Service, "err", err)
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name, err := s.linkLocked(tmp, fileName(t, p.Service, p.Name, s.cfg.Ext))
	_ = os.Remove(tmp)
	if err != nil {
		s.m.failed()
		s.cfg.Logger.Warn("filesink: write failed", "service", p.Service, "err", err)
		return "", err
	}
	f := file{name: name, time: t.UTC().Truncate(time.Millisecond), size: size}
	i, _ := slices.BinarySearchFunc(s.files, f, compareFiles)
	s.files = slices.Insert(s.files, i, f)
	s.total += size
	s.m.wrote(size)
	s.rotateLocked(name)
	return filepath.Join(s.cfg.Dir, name), nil
}

// writeTemp writes the profile, with its labels as comments, to a synced
// temporary file.
func (s *Sink) writeTemp(p *sink.Profile) (string, int64, error) {
	prof := p.Profile
	labels := maps.Clone(s.cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, p.Labels)
	labels["service_name"], labels["__name__"] = p.Service, p.Name
	cp := sink.ShallowCopy(prof)
	cp.Comments = slices.Clone(prof.Comments)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		cp.Comments = append(cp.Comments, "ember: "+k+"="+labels[k])
	}
	name, size, err := atomicfile.WriteTemp(s.cfg.Dir, tmpPrefix+"*", 0o640, func(w io.Writer) error {
		return output.Write(w, s.format, cp, output.Options{})
	})
	if err != nil {
		return "", 0, fmt.Errorf("filesink: %w", err)
	}
	return name, size, nil
}

// linkLocked gives the temporary file its name, adding -1, -2, ... before
// the extension if the name is taken. Link, unlike rename, never replaces.
func (s *Sink) linkLocked(tmp, name string) (string, error) {
	base := strings.TrimSuffix(name, s.cfg.Ext)
	for i := 0; i < 1000; i++ {
		if i > 0 {
			name = fmt.Sprintf("%s-%d%s", base, i, s.cfg.Ext)
		}
		err := os.Link(tmp, filepath.Join(s.cfg.Dir, name))
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("filesink: %w", err)
		}
	}
	return "", fmt.Errorf("filesink: %s: too many files with this name", name)
}

// rotateLocked removes the files past MaxAge, then the oldest until the
// total is within MaxBytes, never keep (the file just written).
func (s *Sink) rotateLocked(keep string) {
	now := s.cfg.now()
	var kept []file
	for i, f := range s.files {
		switch {
		case f.name == keep:
		case s.cfg.MaxAge > 0 && now.Sub(f.time) > s.cfg.MaxAge:
			s.removeLocked(f, "age")
			continue
		case s.cfg.MaxBytes > 0 && s.total > s.cfg.MaxBytes && i < len(s.files)-1:
			s.removeLocked(f, "size")
			continue
		}
		kept = append(kept, f)
	}
	s.files = kept
	s.m.dir(s.total, len(s.files))
}

func (s *Sink) removeLocked(f file, reason string) {
	err := os.Remove(filepath.Join(s.cfg.Dir, f.name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.cfg.Logger.Warn("filesink: cannot remove an old profile", "file", f.name, "err", err)
	}
	s.total -= f.size
	s.m.removed(reason)
}

// Stats returns a snapshot of the sink's counters.
func (s *Sink) Stats() Stats { return s.m.stats() }

// Close makes Enqueue refuse profiles. Every profile was written when
// Enqueue returned, so there is nothing to flush.
func (s *Sink) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
