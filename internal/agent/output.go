package agent

import (
	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/output"
)

// checkOutput refuses an output name before anything is recorded.
func checkOutput(name string) error { return output.Supported(name) }

// writeOutput writes the profile in the form the name's extension picks
// (pprof, HTML or SVG flame graph, folded stacks), atomically.
func writeOutput(name string, p *profile.Profile) error {
	return output.WriteFile(name, p, output.Options{})
}
