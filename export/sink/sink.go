package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/pprof/profile"
)

// Profile names, as Pyroscope files them (the __name__ label).
const (
	NameCPU    = "process_cpu" // on-CPU samples
	NameOffCPU = "offcpu"      // off-CPU time
)

// Profile is one interval's profile of one service.
type Profile struct {
	// Service is the service_name label: who the profile is about.
	Service string
	// Name is the kind of profile, NameCPU or NameOffCPU. Pyroscope files
	// the profile under it (the __name__ label).
	Name string
	// Labels are extra series labels, such as pid, comm or a container.
	// Sinks add their own static labels (hostname, --label) to these.
	Labels map[string]string
	// Profile is the data. Sinks read it during Enqueue and keep no reference.
	Profile *profile.Profile
	// Time is the end of the interval the profile covers. If zero, sinks use
	// the profile's TimeNanos+DurationNanos, or the current time.
	Time time.Time
}

// EndTime returns p.Time, or the end of the profile's own time range, or now.
func (p *Profile) EndTime(now time.Time) time.Time {
	if !p.Time.IsZero() {
		return p.Time
	}
	if p.Profile != nil && p.Profile.TimeNanos != 0 {
		return time.Unix(0, p.Profile.TimeNanos+p.Profile.DurationNanos)
	}
	return now
}

// Sink is a destination for profiles.
type Sink interface {
	// Enqueue accepts a profile for delivery. It never waits for the
	// network; an error means the profile was refused (and counted).
	Enqueue(p Profile) error
	// Close stops accepting profiles, delivers what is queued until ctx is
	// done, and releases the sink's resources. It reports what it could not
	// deliver.
	Close(ctx context.Context) error
}

// Multi returns a Sink that hands each profile to every one of sinks, one
// after another, and closes them all concurrently.
func Multi(sinks ...Sink) Sink {
	return multi(append([]Sink(nil), sinks...))
}

type multi []Sink

func (m multi) Enqueue(p Profile) error {
	var errs []error
	for _, s := range m {
		if err := s.Enqueue(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m multi) Close(ctx context.Context) error {
	errs := make([]error, len(m))
	var wg sync.WaitGroup
	for i, s := range m {
		wg.Go(func() { errs[i] = s.Close(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ShallowCopy returns a new Profile with p's exported fields. It shares
// p's samples, locations, functions and mappings, so that a sink can change
// the copy's top-level fields (Comments, TimeNanos, the sample list) without
// touching the caller's profile. (A Profile holds a mutex and cannot be
// copied by value.)
func ShallowCopy(p *profile.Profile) *profile.Profile {
	return &profile.Profile{
		SampleType:        p.SampleType,
		DefaultSampleType: p.DefaultSampleType,
		Sample:            p.Sample,
		Mapping:           p.Mapping,
		Location:          p.Location,
		Function:          p.Function,
		Comments:          p.Comments,
		DocURL:            p.DocURL,
		DropFrames:        p.DropFrames,
		KeepFrames:        p.KeepFrames,
		TimeNanos:         p.TimeNanos,
		DurationNanos:     p.DurationNanos,
		PeriodType:        p.PeriodType,
		Period:            p.Period,
	}
}

// ParseLabels parses --label flags, each "name=value", into a map. Names
// follow Prometheus ([a-zA-Z_][a-zA-Z0-9_]*), may not start with "__" and
// may not be service_name, which the agent sets per profile.
func ParseLabels(flags []string) (map[string]string, error) {
	m := make(map[string]string, len(flags))
	for _, f := range flags {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("label %q: want name=value", f)
		}
		if !validLabelName(k) || strings.HasPrefix(k, "__") || k == "service_name" {
			return nil, fmt.Errorf("label %q: name must match [a-zA-Z_][a-zA-Z0-9_]*, not start with __, and not be service_name", f)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("label %s given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

func validLabelName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' && i > 0) {
			return false
		}
	}
	return true
}
