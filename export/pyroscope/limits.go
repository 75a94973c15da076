package pyroscope

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"errors"
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/google/pprof/profile"
	typesv1 "github.com/grafana/pyroscope/api/gen/proto/go/types/v1"

	"github.com/emberprof/ember/export/sink"
)

// Label limits of a Pyroscope server (its defaults for max_label_names_per_series,
// max_label_name_length and max_label_value_length).
const (
	maxLabelNames       = 30
	maxLabelNameLength  = 1024
	maxLabelValueLength = 2048
)

// Sentinel errors of Enqueue. Each refused profile is also counted.
var (
	ErrClosed   = errors.New("pyroscope: sink is closed")
	ErrInvalid  = errors.New("pyroscope: invalid profile")
	ErrTooLarge = errors.New("pyroscope: profile too large")
	ErrTooOld   = errors.New("pyroscope: profile too old")
)

// The reserved label names Pyroscope reads.
const (
	labelName    = "__name__"
	labelService = "service_name"
)

func validLabelName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c == ':', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// checkLabel reports whether a user-given label (--label, or a profile's
// own) is one the server accepts and that does not shadow a reserved name.
func checkLabel(k, v string) error {
	switch {
	case !validLabelName(k):
		return fmt.Errorf("%w: label name %q: want [a-zA-Z_][a-zA-Z0-9_]*", ErrInvalid, k)
	case len(k) >= 2 && k[:2] == "__":
		return fmt.Errorf("%w: label name %q: names starting with __ are reserved", ErrInvalid, k)
	case k == labelService:
		return fmt.Errorf("%w: label %s is set from the profile's service", ErrInvalid, k)
	case len(k) > maxLabelNameLength:
		return fmt.Errorf("%w: label name %.32q...: longer than %d bytes", ErrInvalid, k, maxLabelNameLength)
	case len(v) > maxLabelValueLength:
		return fmt.Errorf("%w: label %s: value longer than %d bytes", ErrInvalid, k, maxLabelValueLength)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: label %s: value is not UTF-8", ErrInvalid, k)
	}
	return nil
}

// seriesLabels returns the sorted series labels of a profile: __name__,
// service_name, the static labels and the profile's own. Empty values are
// left out, as in Prometheus.
func seriesLabels(name, service string, static, own map[string]string) ([]*typesv1.LabelPair, error) {
	if !validMetricName(name) {
		return nil, fmt.Errorf("%w: profile name %q", ErrInvalid, name)
	}
	if service == "" {
		return nil, fmt.Errorf("%w: no service name", ErrInvalid)
	}
	if len(service) > maxLabelValueLength || !utf8.ValidString(service) {
		return nil, fmt.Errorf("%w: service name %.32q...: not UTF-8 or longer than %d bytes", ErrInvalid, service, maxLabelValueLength)
	}
	m := make(map[string]string, 2+len(static)+len(own))
	for k, v := range static {
		m[k] = v
	}
	for k, v := range own {
		if err := checkLabel(k, v); err != nil {
			return nil, err
		}
		m[k] = v
	}
	m[labelName], m[labelService] = name, service
	ls := make([]*typesv1.LabelPair, 0, len(m))
	for k, v := range m {
		if v != "" {
			ls = append(ls, &typesv1.LabelPair{Name: k, Value: v})
		}
	}
	if len(ls) > maxLabelNames {
		return nil, fmt.Errorf("%w: %d labels, the server takes at most %d", ErrInvalid, len(ls), maxLabelNames)
	}
	slices.SortFunc(ls, func(a, b *typesv1.LabelPair) int { return cmp.Compare(a.Name, b.Name) })
	return ls, nil
}

// encoded is a profile ready to queue.
type encoded struct {
	data    []byte           // gzipped pprof
	samples int              // samples kept
	trimmed int              // samples dropped to fit the limits
	prof    *profile.Profile // what data encodes, for a Transport's own encoding
}

// fit encodes p as gzipped pprof, without the sample labels in dropLabels
// (see stripLabels). If p has more than maxSamples samples or
// its uncompressed encoding is larger than maxBytes, it encodes instead a
// copy without p's coldest samples (the smallest values of the default
// sample type), and without the locations, functions and mappings only those
// samples used, and says so in a comment. p itself is not changed, apart
// from the encoding fields that profile.Write fills in.
func fit(p *profile.Profile, maxSamples, maxBytes int, dropLabels []string) (enc encoded, err error) {
	defer func() {
		// The profile comes from our own code, but Write panics on some
		// malformed profiles (a nil Location in a Sample); one bad profile
		// must cost only itself.
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: encoding: %v", ErrInvalid, r)
		}
	}()
	if err := p.CheckValid(); err != nil {
		return enc, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	p = stripLabels(p, dropLabels)
	n := len(p.Sample)
	keep := n
	if maxSamples > 0 && keep > maxSamples {
		keep = maxSamples
	}
	var order []int // sample indices, hottest first; built on first need
	var raw bytes.Buffer
	var q *profile.Profile
	for {
		q = p
		if keep < n {
			if order == nil {
				order = hottestFirst(p)
			}
			q = trimmed(p, order[:keep], n)
		}
		raw.Reset()
		if err := q.WriteUncompressed(&raw); err != nil {
			return enc, fmt.Errorf("%w: encoding: %w", ErrInvalid, err)
		}
		if maxBytes <= 0 || raw.Len() <= maxBytes {
			break
		}
		if keep == 0 {
			return enc, fmt.Errorf("%w: %d bytes without any samples, limit %d", ErrTooLarge, raw.Len(), maxBytes)
		}
		// Shrink in proportion, a little more to converge in a few rounds.
		next := int(float64(keep) * float64(maxBytes) / float64(raw.Len()) * 0.95)
		keep = min(next, keep-1)
	}
	var z bytes.Buffer
	z.Grow(raw.Len() / 4)
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return enc, err
	}
	if err := zw.Close(); err != nil {
		return enc, err
	}
	return encoded{data: z.Bytes(), samples: keep, trimmed: n - keep, prof: q}, nil
}

// valueIndex returns the index of the sample value that says how hot a
// sample is: the default sample type, or the last one (pprof's convention).
func valueIndex(p *profile.Profile) int {
	if p.DefaultSampleType != "" {
		for i, st := range p.SampleType {
			if st.Type == p.DefaultSampleType {
				return i
			}
		}
	}
	return len(p.SampleType) - 1
}

// hottestFirst returns the indices of p's samples ordered by decreasing value.
func hottestFirst(p *profile.Profile) []int {
	vi := valueIndex(p)
	val := func(i int) int64 {
		if v := p.Sample[i].Value; vi >= 0 && vi < len(v) {
			return v[vi]
		}
		return 0
	}
	order := make([]int, len(p.Sample))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(val(b), val(a)) })
	return order
}

// trimmed returns a shallow copy of p with only the samples at keep (in
// their original order) and what they reference.
func trimmed(p *profile.Profile, keep []int, total int) *profile.Profile {
	idx := slices.Clone(keep)
	slices.Sort(idx)
	q := sink.ShallowCopy(p)
	q.Sample = make([]*profile.Sample, len(idx))
	locs := make(map[*profile.Location]bool)
	for i, j := range idx {
		s := p.Sample[j]
		q.Sample[i] = s
		for _, l := range s.Location {
			locs[l] = true
		}
	}
	funcs := make(map[*profile.Function]bool)
	maps := make(map[*profile.Mapping]bool)
	q.Location = nil
	for _, l := range p.Location {
		if !locs[l] {
			continue
		}
		q.Location = append(q.Location, l)
		if l.Mapping != nil {
			maps[l.Mapping] = true
		}
		for _, ln := range l.Line {
			if ln.Function != nil {
				funcs[ln.Function] = true
			}
		}
	}
	q.Function = nil
	for _, f := range p.Function {
		if funcs[f] {
			q.Function = append(q.Function, f)
		}
	}
	q.Mapping = nil
	for _, m := range p.Mapping {
		if maps[m] {
			q.Mapping = append(q.Mapping, m)
		}
	}
	q.Comments = append(slices.Clone(p.Comments),
		fmt.Sprintf("ember: %d of %d samples, the coldest, were dropped to fit the server's limits", total-len(idx), total))
	return q
}

// stripLabels returns p without the sample labels named in drop, string or
// numeric, and with the samples that became alike merged. It returns p
// itself if no sample has such a label. p is not changed.
//
// Pyroscope turns every distinct set of string sample labels into a series
// of its own, so a per-thread label multiplies the series by the threads.
func stripLabels(p *profile.Profile, drop []string) *profile.Profile {
	has := func(s *profile.Sample) bool {
		for _, k := range drop {
			if _, ok := s.Label[k]; ok {
				return true
			}
			if _, ok := s.NumLabel[k]; ok {
				return true
			}
		}
		return false
	}
	if len(drop) == 0 || !slices.ContainsFunc(p.Sample, has) {
		return p
	}
	q := sink.ShallowCopy(p)
	q.Sample = make([]*profile.Sample, 0, len(p.Sample))
	merged := make(map[string]*profile.Sample, len(p.Sample))
	var key []byte
	for _, s := range p.Sample {
		n := &profile.Sample{Location: s.Location, Value: slices.Clone(s.Value)}
		for k, v := range s.Label {
			if !slices.Contains(drop, k) {
				if n.Label == nil {
					n.Label = map[string][]string{}
				}
				n.Label[k] = v
			}
		}
		for k, v := range s.NumLabel {
			if !slices.Contains(drop, k) {
				if n.NumLabel == nil {
					n.NumLabel = map[string][]int64{}
				}
				n.NumLabel[k] = v
				if u, ok := s.NumUnit[k]; ok {
					if n.NumUnit == nil {
						n.NumUnit = map[string][]string{}
					}
					n.NumUnit[k] = u
				}
			}
		}
		key = sampleKey(key[:0], n)
		if m, ok := merged[string(key)]; ok {
			for i := range m.Value {
				m.Value[i] += n.Value[i]
			}
			continue
		}
		merged[string(key)] = n
		q.Sample = append(q.Sample, n)
	}
	return q
}

// sampleKey appends to b a key that is equal for samples with the same
// stack and labels.
func sampleKey(b []byte, s *profile.Sample) []byte {
	for _, l := range s.Location {
		b = fmt.Appendf(b, "%p,", l)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Label)) {
		b = fmt.Appendf(b, "|%q=%q", k, s.Label[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.NumLabel)) {
		b = fmt.Appendf(b, "|%q#%v%v", k, s.NumLabel[k], s.NumUnit[k])
	}
	return b
}
