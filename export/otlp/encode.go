package otlp

import (
	"crypto/rand"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/google/pprof/profile"
	collpb "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	pb "go.opentelemetry.io/proto/otlp/profiles/v1development"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
)

// Attribute names, from OpenTelemetry's semantic conventions.
const (
	AttrServiceName = "service.name"
	AttrHostName    = "host.name"
	AttrPID         = "process.pid"
	AttrContainerID = "container.id"
	AttrBuildID     = "process.executable.build_id.gnu"
	AttrFrameType   = "profile.frame.type"
	AttrComment     = "pprof.comment" // a pprof comment, kept for the round trip
)

// Sample type names that differ between pprof (Ember's) and OTLP.
const (
	otlpOffCPU  = "off_cpu"
	pprofOffCPU = "offcpu"
)

// ScopeName names the instrumentation scope of Ember's profiles.
const ScopeName = "github.com/emberprof/ember"

// Attr is a resource attribute: a string or an int64 value.
type Attr struct {
	Key   string
	Value any
}

// Options controls Convert.
type Options struct {
	// Resource are the attributes of the resource the samples belong to
	// (service.name, host.name, ...).
	Resource []Attr
	// ByProcess splits the samples by their pid label into one resource per
	// process, with process.pid, container.id from the cgroup label when it
	// names one, and service.name from the comm label unless Resource sets it.
	ByProcess bool
	// SampleTypes selects the pprof sample types exported, by type; nil
	// exports every type. A sink sends Pyroscope only the type it files.
	SampleTypes []string
}

// Marshal converts p and encodes the request in protobuf, as a receiver
// takes it (the body of an HTTP export, the message of a gRPC one).
func Marshal(p *profile.Profile, opts Options) ([]byte, error) {
	req, err := Convert(p, opts)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(req)
}

// Convert returns p as an ExportProfilesServiceRequest.
func Convert(p *profile.Profile, opts Options) (*collpb.ExportProfilesServiceRequest, error) {
	if len(p.SampleType) == 0 {
		return nil, fmt.Errorf("otlp: profile has no sample types")
	}
	var types []int
	for i, st := range p.SampleType {
		if opts.SampleTypes == nil || slices.Contains(opts.SampleTypes, st.Type) {
			types = append(types, i)
		}
	}
	if len(types) == 0 {
		return nil, fmt.Errorf("otlp: profile has none of the sample types %v", opts.SampleTypes)
	}
	d := newDict()
	groups := map[int64][]*profile.Sample{}
	var order []int64
	for _, s := range p.Sample {
		var pid int64
		if opts.ByProcess {
			pid = firstInt(s.NumLabel["pid"])
		}
		if _, ok := groups[pid]; !ok {
			order = append(order, pid)
		}
		groups[pid] = append(groups[pid], s)
	}
	if len(order) == 0 {
		order = []int64{0}
	}
	req := &collpb.ExportProfilesServiceRequest{Dictionary: d.d}
	for _, pid := range order {
		samples := groups[pid]
		res := resource(opts, pid, samples)
		sp := &pb.ScopeProfiles{Scope: &commonpb.InstrumentationScope{Name: ScopeName}}
		for _, ti := range types {
			sp.Profiles = append(sp.Profiles, d.profile(p, ti, samples))
		}
		req.ResourceProfiles = append(req.ResourceProfiles, &pb.ResourceProfiles{Resource: res, ScopeProfiles: []*pb.ScopeProfiles{sp}})
	}
	return req, nil
}

// resource returns the resource of a group of samples.
func resource(opts Options, pid int64, samples []*profile.Sample) *resourcepb.Resource {
	attrs := slices.Clone(opts.Resource)
	has := func(k string) bool { return slices.ContainsFunc(attrs, func(a Attr) bool { return a.Key == k }) }
	if opts.ByProcess && pid != 0 {
		attrs = append(attrs, Attr{AttrPID, pid})
		if len(samples) > 0 {
			if c := firstStr(samples[0].Label["comm"]); c != "" && !has(AttrServiceName) {
				attrs = append(attrs, Attr{AttrServiceName, c})
			}
			if id := ContainerID(firstStr(samples[0].Label["cgroup"])); id != "" && !has(AttrContainerID) {
				attrs = append(attrs, Attr{AttrContainerID, id})
			}
		}
	}
	r := &resourcepb.Resource{}
	for _, a := range attrs {
		r.Attributes = append(r.Attributes, &commonpb.KeyValue{Key: a.Key, Value: anyValue(a.Value)})
	}
	return r
}

// containerRE matches the 64-hex-digit container ID in a cgroup path, as
// Docker, containerd and CRI-O name their scopes (docker-ID.scope,
// cri-containerd-ID.scope, /docker/ID).
var containerRE = regexp.MustCompile(`(?:^|[/-])([0-9a-f]{64})(?:\.scope)?(?:/|$)`)

// ContainerID returns the container ID a cgroup path names, or "".
func ContainerID(cgroup string) string {
	m := containerRE.FindAllStringSubmatch(cgroup, -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}

func anyValue(v any) *commonpb.AnyValue {
	switch x := v.(type) {
	case int64:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: x}}
	case int:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(x)}}
	case string:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: x}}
	}
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: fmt.Sprint(v)}}
}

func firstInt(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

func firstStr(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// dict interns what the profiles of one request share.
type dict struct {
	d      *pb.ProfilesDictionary
	strs   map[string]int32
	attrs  map[string]int32
	funcs  map[*profile.Function]int32
	maps   map[*profile.Mapping]int32
	locs   map[*profile.Location]int32
	stacks map[string]int32
}

func newDict() *dict {
	d := &dict{
		d: &pb.ProfilesDictionary{
			// Entry 0 of every table is the zero value.
			StringTable:    []string{""},
			MappingTable:   []*pb.Mapping{{}},
			LocationTable:  []*pb.Location{{}},
			FunctionTable:  []*pb.Function{{}},
			LinkTable:      []*pb.Link{{}},
			AttributeTable: []*pb.KeyValueAndUnit{{}},
			StackTable:     []*pb.Stack{{}},
		},
		strs: map[string]int32{"": 0}, attrs: map[string]int32{},
		funcs: map[*profile.Function]int32{}, maps: map[*profile.Mapping]int32{},
		locs: map[*profile.Location]int32{}, stacks: map[string]int32{},
	}
	return d
}

func (d *dict) str(s string) int32 {
	if i, ok := d.strs[s]; ok {
		return i
	}
	i := int32(len(d.d.StringTable))
	d.d.StringTable = append(d.d.StringTable, s)
	d.strs[s] = i
	return i
}

func (d *dict) attr(key string, v any, unit string) int32 {
	k := fmt.Sprintf("%q\x00%T\x00%v\x00%q", key, v, v, unit)
	if i, ok := d.attrs[k]; ok {
		return i
	}
	i := int32(len(d.d.AttributeTable))
	kv := &pb.KeyValueAndUnit{KeyStrindex: d.str(key), Value: anyValue(v)}
	if unit != "" {
		kv.UnitStrindex = d.str(unit)
	}
	d.d.AttributeTable = append(d.d.AttributeTable, kv)
	d.attrs[k] = i
	return i
}

func (d *dict) mapping(m *profile.Mapping) int32 {
	if m == nil {
		return 0
	}
	if i, ok := d.maps[m]; ok {
		return i
	}
	pm := &pb.Mapping{MemoryStart: m.Start, MemoryLimit: m.Limit, FileOffset: m.Offset, FilenameStrindex: d.str(m.File)}
	if m.BuildID != "" {
		pm.AttributeIndices = []int32{d.attr(AttrBuildID, m.BuildID, "")}
	}
	i := int32(len(d.d.MappingTable))
	d.d.MappingTable = append(d.d.MappingTable, pm)
	d.maps[m] = i
	return i
}

func (d *dict) function(f *profile.Function) int32 {
	if f == nil {
		return 0
	}
	if i, ok := d.funcs[f]; ok {
		return i
	}
	i := int32(len(d.d.FunctionTable))
	d.d.FunctionTable = append(d.d.FunctionTable, &pb.Function{NameStrindex: d.str(f.Name),
		SystemNameStrindex: d.str(f.SystemName), FilenameStrindex: d.str(f.Filename), StartLine: f.StartLine})
	d.funcs[f] = i
	return i
}

func (d *dict) location(l *profile.Location) int32 {
	if i, ok := d.locs[l]; ok {
		return i
	}
	pl := &pb.Location{MappingIndex: d.mapping(l.Mapping), Address: l.Address}
	for _, ln := range l.Line {
		pl.Lines = append(pl.Lines, &pb.Line{FunctionIndex: d.function(ln.Function), Line: ln.Line, Column: ln.Column})
	}
	kind := "native"
	if l.Mapping != nil && (l.Mapping.File == "[kernel.kallsyms]" || strings.HasPrefix(l.Mapping.File, "[kernel.")) {
		kind = "kernel"
	}
	pl.AttributeIndices = []int32{d.attr(AttrFrameType, kind, "")}
	i := int32(len(d.d.LocationTable))
	d.d.LocationTable = append(d.d.LocationTable, pl)
	d.locs[l] = i
	return i
}

func (d *dict) stack(locs []*profile.Location) int32 {
	idx := make([]int32, len(locs))
	var key strings.Builder
	for i, l := range locs {
		idx[i] = d.location(l)
		key.WriteString(strconv.Itoa(int(idx[i])))
		key.WriteByte(',')
	}
	if i, ok := d.stacks[key.String()]; ok {
		return i
	}
	i := int32(len(d.d.StackTable))
	d.d.StackTable = append(d.d.StackTable, &pb.Stack{LocationIndices: idx})
	d.stacks[key.String()] = i
	return i
}

// otlpType returns the OTLP name of a pprof sample type.
func otlpType(t string) string {
	if t == pprofOffCPU {
		return otlpOffCPU
	}
	return t
}

// profile returns the OTLP profile of p's sample type ti over samples.
func (d *dict) profile(p *profile.Profile, ti int, samples []*profile.Sample) *pb.Profile {
	st := p.SampleType[ti]
	op := &pb.Profile{
		SampleType:   &pb.ValueType{TypeStrindex: d.str(otlpType(st.Type)), UnitStrindex: d.str(st.Unit)},
		TimeUnixNano: uint64(max(p.TimeNanos, 0)),
		DurationNano: uint64(max(p.DurationNanos, 0)),
		ProfileId:    make([]byte, 16),
	}
	_, _ = rand.Read(op.ProfileId)
	// The period applies to counted samples (on-CPU: each sample stands for
	// 1e9/Hz ns of CPU); Pyroscope reads samples/count with a cpu period as
	// CPU time. Measured values (off-CPU ns) have none.
	if p.PeriodType != nil && p.Period != 0 && st.Unit == "count" && st.Type == "samples" {
		op.PeriodType = &pb.ValueType{TypeStrindex: d.str(p.PeriodType.Type), UnitStrindex: d.str(p.PeriodType.Unit)}
		op.Period = p.Period
	}
	for _, c := range p.Comments {
		op.AttributeIndices = append(op.AttributeIndices, d.attr(AttrComment, c, ""))
	}
	for _, s := range samples {
		if ti >= len(s.Value) || s.Value[ti] == 0 {
			continue
		}
		os := &pb.Sample{StackIndex: d.stack(s.Location), Values: []int64{s.Value[ti]}}
		for _, k := range sortedKeys(s.Label) {
			for _, v := range s.Label[k] {
				os.AttributeIndices = append(os.AttributeIndices, d.attr(k, v, ""))
			}
		}
		for _, k := range sortedKeys(s.NumLabel) {
			units := s.NumUnit[k]
			for j, v := range s.NumLabel[k] {
				u := ""
				if j < len(units) {
					u = units[j]
				}
				os.AttributeIndices = append(os.AttributeIndices, d.attr(k, v, u))
			}
		}
		op.Samples = append(op.Samples, os)
	}
	return op
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
