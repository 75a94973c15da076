package otlp

import (
	"errors"
	"fmt"
	"slices"

	"github.com/google/pprof/profile"
	collpb "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	pb "go.opentelemetry.io/proto/otlp/profiles/v1development"
	"google.golang.org/protobuf/proto"
)

// ErrFormat is wrapped by the errors of requests that do not hold together:
// an index out of its table, a sample without its value.
var ErrFormat = errors.New("otlp: malformed profiles")

// Unmarshal decodes a protobuf ExportProfilesServiceRequest and converts it
// with ToPprof.
func Unmarshal(b []byte) (*profile.Profile, error) {
	var req collpb.ExportProfilesServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	return ToPprof(&req)
}

// ToPprof merges every profile of req into one pprof: one sample type per
// OTLP sample type (off_cpu named offcpu again), one sample per stack and
// attribute set carrying a value of each type. Resource attributes are not
// kept: Ember's pprof has them as sample labels already.
func ToPprof(req *collpb.ExportProfilesServiceRequest) (p *profile.Profile, err error) {
	defer func() {
		if r := recover(); r != nil { // a bug here must cost this request only
			p, err = nil, fmt.Errorf("%w: %v", ErrFormat, r)
		}
	}()
	d := req.GetDictionary()
	if d == nil {
		return nil, fmt.Errorf("%w: no dictionary", ErrFormat)
	}
	r := &reader{d: d, p: &profile.Profile{}, funcs: map[int32]*profile.Function{},
		maps: map[int32]*profile.Mapping{}, locs: map[int32]*profile.Location{}, samples: map[string]*profile.Sample{},
		types: map[[2]string]int{}}
	for _, rp := range req.GetResourceProfiles() {
		for _, sp := range rp.GetScopeProfiles() {
			for _, op := range sp.GetProfiles() {
				if err := r.profile(op); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, s := range r.p.Sample {
		for len(s.Value) < len(r.p.SampleType) {
			s.Value = append(s.Value, 0)
		}
	}
	return r.p, nil
}

type reader struct {
	d       *pb.ProfilesDictionary
	p       *profile.Profile
	funcs   map[int32]*profile.Function
	maps    map[int32]*profile.Mapping
	locs    map[int32]*profile.Location
	samples map[string]*profile.Sample
	types   map[[2]string]int
}

func get[T any](table []T, i int32, what string) (T, error) {
	var zero T
	if i < 0 || int(i) >= len(table) {
		return zero, fmt.Errorf("%w: %s index %d of %d", ErrFormat, what, i, len(table))
	}
	return table[i], nil
}

func (r *reader) str(i int32) (string, error) { return get(r.d.StringTable, i, "string") }

func (r *reader) profile(op *pb.Profile) error {
	st := op.GetSampleType()
	if st == nil {
		return fmt.Errorf("%w: profile without a sample type", ErrFormat)
	}
	typ, err := r.str(st.TypeStrindex)
	if err != nil {
		return err
	}
	unit, err := r.str(st.UnitStrindex)
	if err != nil {
		return err
	}
	if typ == otlpOffCPU {
		typ = pprofOffCPU
	}
	ti, ok := r.types[[2]string{typ, unit}]
	if !ok {
		ti = len(r.p.SampleType)
		r.types[[2]string{typ, unit}] = ti
		r.p.SampleType = append(r.p.SampleType, &profile.ValueType{Type: typ, Unit: unit})
	}
	if r.p.TimeNanos == 0 {
		r.p.TimeNanos, r.p.DurationNanos = int64(op.TimeUnixNano), int64(op.DurationNano)
	}
	if pt := op.GetPeriodType(); pt != nil && r.p.PeriodType == nil {
		t, err1 := r.str(pt.TypeStrindex)
		u, err2 := r.str(pt.UnitStrindex)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		r.p.PeriodType, r.p.Period = &profile.ValueType{Type: t, Unit: u}, op.Period
	}
	for _, ai := range op.AttributeIndices {
		a, err := get(r.d.AttributeTable, ai, "attribute")
		if err != nil {
			return err
		}
		if k, _ := r.str(a.GetKeyStrindex()); k == AttrComment && !slices.Contains(r.p.Comments, a.GetValue().GetStringValue()) {
			r.p.Comments = append(r.p.Comments, a.GetValue().GetStringValue())
		}
	}
	for _, os := range op.GetSamples() {
		if err := r.sample(os, ti); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) sample(os *pb.Sample, ti int) error {
	var v int64
	for _, x := range os.Values {
		v += x
	}
	if len(os.Values) == 0 {
		v = int64(len(os.TimestampsUnixNano))
	}
	key := fmt.Sprint(os.StackIndex, os.AttributeIndices)
	s, ok := r.samples[key]
	if !ok {
		stack, err := get(r.d.StackTable, os.StackIndex, "stack")
		if err != nil {
			return err
		}
		s = &profile.Sample{}
		for _, li := range stack.GetLocationIndices() {
			l, err := r.location(li)
			if err != nil {
				return err
			}
			s.Location = append(s.Location, l)
		}
		for _, ai := range os.AttributeIndices {
			if err := r.label(s, ai); err != nil {
				return err
			}
		}
		r.samples[key] = s
		r.p.Sample = append(r.p.Sample, s)
	}
	for len(s.Value) <= ti {
		s.Value = append(s.Value, 0)
	}
	s.Value[ti] += v
	return nil
}

func (r *reader) label(s *profile.Sample, ai int32) error {
	a, err := get(r.d.AttributeTable, ai, "attribute")
	if err != nil {
		return err
	}
	k, err := r.str(a.GetKeyStrindex())
	if err != nil {
		return err
	}
	switch v := a.GetValue().GetValue().(type) {
	case *commonpb.AnyValue_IntValue:
		if s.NumLabel == nil {
			s.NumLabel = map[string][]int64{}
		}
		s.NumLabel[k] = append(s.NumLabel[k], v.IntValue)
		if a.GetUnitStrindex() != 0 {
			u, err := r.str(a.GetUnitStrindex())
			if err != nil {
				return err
			}
			if s.NumUnit == nil {
				s.NumUnit = map[string][]string{}
			}
			s.NumUnit[k] = append(s.NumUnit[k], u)
		}
	default:
		if s.Label == nil {
			s.Label = map[string][]string{}
		}
		s.Label[k] = append(s.Label[k], a.GetValue().GetStringValue())
	}
	return nil
}

func (r *reader) location(i int32) (*profile.Location, error) {
	if l, ok := r.locs[i]; ok {
		return l, nil
	}
	ol, err := get(r.d.LocationTable, i, "location")
	if err != nil {
		return nil, err
	}
	l := &profile.Location{ID: uint64(len(r.p.Location) + 1), Address: ol.GetAddress()}
	if ol.GetMappingIndex() != 0 {
		if l.Mapping, err = r.mapping(ol.GetMappingIndex()); err != nil {
			return nil, err
		}
	}
	for _, ln := range ol.GetLines() {
		f, err := r.function(ln.GetFunctionIndex())
		if err != nil {
			return nil, err
		}
		l.Line = append(l.Line, profile.Line{Function: f, Line: ln.GetLine(), Column: ln.GetColumn()})
	}
	r.locs[i] = l
	r.p.Location = append(r.p.Location, l)
	return l, nil
}

func (r *reader) mapping(i int32) (*profile.Mapping, error) {
	if m, ok := r.maps[i]; ok {
		return m, nil
	}
	om, err := get(r.d.MappingTable, i, "mapping")
	if err != nil {
		return nil, err
	}
	file, err := r.str(om.GetFilenameStrindex())
	if err != nil {
		return nil, err
	}
	m := &profile.Mapping{ID: uint64(len(r.p.Mapping) + 1), Start: om.GetMemoryStart(), Limit: om.GetMemoryLimit(),
		Offset: om.GetFileOffset(), File: file}
	for _, ai := range om.GetAttributeIndices() {
		a, err := get(r.d.AttributeTable, ai, "attribute")
		if err != nil {
			return nil, err
		}
		if k, _ := r.str(a.GetKeyStrindex()); k == AttrBuildID {
			m.BuildID = a.GetValue().GetStringValue()
		}
	}
	r.maps[i] = m
	r.p.Mapping = append(r.p.Mapping, m)
	return m, nil
}

func (r *reader) function(i int32) (*profile.Function, error) {
	if f, ok := r.funcs[i]; ok {
		return f, nil
	}
	of, err := get(r.d.FunctionTable, i, "function")
	if err != nil {
		return nil, err
	}
	name, err1 := r.str(of.GetNameStrindex())
	sys, err2 := r.str(of.GetSystemNameStrindex())
	file, err3 := r.str(of.GetFilenameStrindex())
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, err
	}
	f := &profile.Function{ID: uint64(len(r.p.Function) + 1), Name: name, SystemName: sys, Filename: file, StartLine: of.GetStartLine()}
	r.funcs[i] = f
	r.p.Function = append(r.p.Function, f)
	return f, nil
}
