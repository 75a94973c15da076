package main

import (
	"path/filepath"
	"testing"

	"github.com/emberprof/ember/internal/testutil"
)

// record --self-profile FILE writes Ember's own Go CPU profile, a pprof that
// go tool pprof reads, beside the profile of what it recorded.
func TestSelfProfile(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	self := filepath.Join(dir, "self.prof")
	runEmber(t, dir, "record", "-o", "out.pb.gz", "--self-profile", self, "--", "sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
	p := readProfile(t, self)
	if p.PeriodType == nil || p.PeriodType.Type != "cpu" || len(p.SampleType) != 2 || p.SampleType[1].Type != "cpu" {
		t.Fatalf("not a CPU profile: period %v, sample types %v", p.PeriodType, p.SampleType)
	}
	if len(p.Mapping) == 0 || filepath.Base(p.Mapping[0].File) != "ember" {
		t.Errorf("mappings %v: want ember's own binary first", p.Mapping)
	}
	readProfile(t, filepath.Join(dir, "out.pb.gz"))
}
