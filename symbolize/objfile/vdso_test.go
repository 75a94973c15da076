package objfile_test

// An external test: package proc, which reads the maps here, imports objfile.

import (
	"bytes"
	"debug/elf"
	"os"
	"testing"

	"github.com/emberprof/ember/internal/proc"
	"github.com/emberprof/ember/symbolize/objfile"
)

// The vDSO image is as large as Ember's [vdso] mapping, and is its ELF.
func TestReadOwnVDSO(t *testing.T) {
	b, err := objfile.ReadOwnVDSO()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := proc.ParseMaps(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var size uint64
	for _, m := range ms {
		if m.Path == objfile.VDSOPath {
			size = m.Limit - m.Start
		}
	}
	if size == 0 || uint64(len(b)) != size {
		t.Fatalf("vDSO image of %d bytes, [vdso] mapping of %d", len(b), size)
	}
	ef, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	syms, err := ef.DynamicSymbols()
	if err != nil || len(syms) == 0 {
		t.Fatalf("vDSO symbols: %d, %v", len(syms), err)
	}
	if gnu, _ := objfile.BuildIDs(ef); gnu == "" {
		t.Errorf("vDSO without a build ID")
	}
}
