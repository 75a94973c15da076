package agent

import (
	"strings"
	"testing"

	"github.com/emberprof/ember/internal/tracer"
)

// The summary's details (debug level, the profile's comments) say how many
// binaries could not be read for unwind tables, and only when some could not.
func TestDetailsBadBinaries(t *testing.T) {
	s := &Summary{Unwind: tracer.UnwindTables, UnwindStats: &tracer.UnwindStats{Processes: 2, Tables: 3}}
	for _, l := range s.details() {
		if strings.Contains(l, "could not be read") {
			t.Fatalf("a line about bad binaries with none: %q", l)
		}
	}
	s.UnwindStats.BadBinaries, s.UnwindStats.Recovered = 2, 1
	want := "unwind tables: 2 binaries could not be read (walked with frame pointers), 1 worker panics recovered"
	for _, l := range s.details() {
		if l == want {
			return
		}
	}
	t.Errorf("details %q lack %q", s.details(), want)
}
