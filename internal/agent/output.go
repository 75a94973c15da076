package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/pprof/profile"
)

// checkOutput refuses an output name before anything is recorded.
func checkOutput(name string) error {
	if name == "" {
		return fmt.Errorf("no output file given")
	}
	if !strings.HasSuffix(name, ".pb.gz") && !strings.HasSuffix(name, ".pprof") && !strings.HasSuffix(name, ".pb") {
		return fmt.Errorf("output %s: unsupported extension (want .pb.gz, .pprof or .pb)", name)
	}
	return nil
}

// writeOutput writes the profile atomically: a reader never sees half a file.
func writeOutput(name string, p *profile.Profile) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".ember-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if err := p.Write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return os.Rename(tmp.Name(), name)
}
