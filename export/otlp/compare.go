package otlp

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
	collpb "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
)

type collReq = collpb.ExportProfilesServiceRequest

// Compare returns "" if a and b hold the same samples: per sample type, the
// same total for each stack (every frame's function, file, line, column,
// address, mapping file and build ID) and label set; else what differs.
// The round trip tests use it to set an OTLP export beside the pprof of the
// same recording.
func Compare(a, b *profile.Profile) string {
	ka, kb := keyed(a), keyed(b)
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(ka)) {
		if ka[k] != kb[k] {
			diffs = append(diffs, fmt.Sprintf("%s: %d vs %d", k, ka[k], kb[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(kb)) {
		if _, ok := ka[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: only in the second (%d)", k, kb[k]))
		}
	}
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("... %d differences in all", len(diffs)))
	}
	return strings.Join(diffs, "\n")
}

func keyed(p *profile.Profile) map[string]int64 {
	m := map[string]int64{}
	for _, s := range p.Sample {
		var b strings.Builder
		for _, l := range s.Location {
			if l.Mapping != nil {
				fmt.Fprintf(&b, "%s@%s", l.Mapping.File, l.Mapping.BuildID)
			}
			fmt.Fprintf(&b, "+%#x[", l.Address)
			for _, ln := range l.Line {
				if ln.Function != nil {
					fmt.Fprintf(&b, "%s(%s) %s:%d:%d;", ln.Function.Name, ln.Function.SystemName, ln.Function.Filename, ln.Line, ln.Column)
				}
			}
			b.WriteString("] ")
		}
		for _, k := range slices.Sorted(maps.Keys(s.Label)) {
			fmt.Fprintf(&b, " %s=%q", k, s.Label[k])
		}
		for _, k := range slices.Sorted(maps.Keys(s.NumLabel)) {
			fmt.Fprintf(&b, " %s=%v%v", k, s.NumLabel[k], s.NumUnit[k])
		}
		for i, st := range p.SampleType {
			if i < len(s.Value) && s.Value[i] != 0 {
				m[st.Type+"/"+st.Unit+" "+b.String()] += s.Value[i]
			}
		}
	}
	return m
}
