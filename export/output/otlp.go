package output

import (
	"io"
	"os"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/export/otlp"
)

// writeOTLP writes p as an OTLP ExportProfilesServiceRequest, one resource
// per process (process.pid, service.name from the process's name,
// container.id), as the OpenTelemetry profiler sends them, with host.name.
func writeOTLP(w io.Writer, p *profile.Profile) error {
	host, _ := os.Hostname()
	b, err := otlp.Marshal(p, otlp.Options{ByProcess: true, Resource: []otlp.Attr{{Key: otlp.AttrHostName, Value: host}}})
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
