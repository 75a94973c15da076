package filesink

import (
	"time"

	"github.com/spf13/pflag"
)

// Flags are the command-line flags that configure a Sink, for the agent's
// command to register.
type Flags struct {
	Dir      string
	MaxBytes int64
	MaxAge   time.Duration
	Ext      string
}

// Register adds the --output-* flags to fs.
func (f *Flags) Register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Dir, "output-dir", "", "write a file per service, kind and interval to this directory")
	fs.StringVar(&f.Ext, "output-format", ".pb.gz", "form of the files: .pb.gz (gzipped pprof), .html, .svg or .folded")
	fs.Int64Var(&f.MaxBytes, "output-max-bytes", DefaultMaxBytes, "remove the oldest files beyond this total size (negative: no limit)")
	fs.DurationVar(&f.MaxAge, "output-max-age", DefaultMaxAge, "remove files older than this (negative: keep for ever)")
}

// Config returns the Sink configuration the flags describe; it is only
// meaningful if Dir is set. The caller sets Labels, Registerer and Logger.
func (f *Flags) Config() Config {
	return Config{Dir: f.Dir, MaxBytes: f.MaxBytes, MaxAge: f.MaxAge, Ext: f.Ext}
}
