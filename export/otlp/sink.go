package otlp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/pprof/profile"
	collpb "go.opentelemetry.io/proto/otlp/collector/profiles/v1development"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/emberprof/ember/export/pyroscope"
	"github.com/emberprof/ember/export/sink"
)

// Protocols of an OTLP exporter, named as OTEL_EXPORTER_OTLP_PROTOCOL names
// them.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// HTTPPath is where an OTLP/HTTP receiver takes profiles of the
// v1development protocol; it is appended to an endpoint without a path.
const HTTPPath = "/v1development/profiles"

// SinkConfig configures an OTLP sink.
type SinkConfig struct {
	// Config is the queue, retries, limits, credentials and TLS, as for a
	// Pyroscope sink; URL is the receiver's endpoint: http://host:port (for
	// gRPC: without TLS) or https://host:port.
	pyroscope.Config
	// Protocol is ProtocolGRPC or ProtocolHTTP.
	Protocol string
}

// NewSink returns a sink that exports profiles to an OTLP receiver with
// ProfilesService/Export, over gRPC or HTTP/protobuf. It is a Pyroscope sink
// with its push replaced (pyroscope.NewWithTransport), so that both sinks
// share one queue, one retry policy and one set of limits: OTLP receivers
// such as Pyroscope's enforce the same per-profile limits behind it.
func NewSink(cfg SinkConfig) (*pyroscope.Sink, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("otlp: endpoint: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("otlp: endpoint %q: want http:// or https:// and a host", u.Redacted())
	}
	tr := pyroscope.Transport{Subsystem: "otlp", Encode: encodeFor(cfg.Labels)}
	switch cfg.Protocol {
	case ProtocolHTTP:
		target := *u
		target.User = nil
		if target.Path == "" || target.Path == "/" {
			target.Path = HTTPPath
		}
		endpoint := target.String()
		tr.Send = func(ctx context.Context, c *pyroscope.Conn, data []byte) pyroscope.Result {
			return sendHTTP(ctx, c, endpoint, data)
		}
	case ProtocolGRPC:
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("otlp: endpoint %q: a gRPC endpoint has no path", u.Redacted())
		}
		creds := insecure.NewCredentials()
		if u.Scheme == "https" {
			tc, err := cfg.TLS.ClientTLS()
			if err != nil {
				return nil, fmt.Errorf("otlp: %w", err)
			}
			creds = credentials.NewTLS(tc)
		}
		// The connection is lazy: it dials on the first export, and an
		// unreachable receiver is a retried failure, as over HTTP.
		cc, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, fmt.Errorf("otlp: gRPC client for %s: %w", u.Host, err)
		}
		client := collpb.NewProfilesServiceClient(cc)
		tr.Send = func(ctx context.Context, c *pyroscope.Conn, data []byte) pyroscope.Result {
			return sendGRPC(ctx, c, client, data)
		}
		tr.Close = cc.Close
	default:
		return nil, fmt.Errorf("otlp: protocol %q: want %s or %s", cfg.Protocol, ProtocolGRPC, ProtocolHTTP)
	}
	s, err := pyroscope.NewWithTransport(cfg.Config, tr)
	if err != nil && tr.Close != nil {
		_ = tr.Close()
	}
	return s, err
}

// encodeFor returns the Encode of a transport whose sink adds static to
// every profile's labels: the request in protobuf, with the profile's
// labels as resource attributes, only the sample type Pyroscope files the
// profile under (samples/count for on-CPU, read as CPU time with the
// period; off_cpu/nanoseconds for off-CPU).
func encodeFor(static map[string]string) func(*sink.Profile, *profile.Profile) ([]byte, error) {
	return func(p *sink.Profile, trimmed *profile.Profile) ([]byte, error) {
		var types []string
		switch p.Name {
		case sink.NameCPU:
			types = []string{"samples"}
		case sink.NameOffCPU:
			types = []string{pprofOffCPU}
		}
		opts := Options{Resource: resourceAttrs(p, static), SampleTypes: types}
		return Marshal(trimmed, opts)
	}
}

// resourceAttrs turns a profile's series labels into resource attributes,
// under the semantic-convention names where there is one (the OpenTelemetry
// profiler's: service.name, host.name, process.pid, container.id), the
// profile's own labels over the static ones.
func resourceAttrs(p *sink.Profile, static map[string]string) []Attr {
	labels := make(map[string]string, len(static)+len(p.Labels))
	for k, v := range static {
		labels[k] = v
	}
	for k, v := range p.Labels {
		labels[k] = v
	}
	attrs := []Attr{{AttrServiceName, p.Service}}
	for _, k := range sortedKeys(labels) {
		v := labels[k]
		switch k {
		case "service_name":
			continue // p.Service is the service
		case "hostname":
			attrs = append(attrs, Attr{AttrHostName, v})
		case "pid":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				attrs = append(attrs, Attr{AttrPID, n})
			} else {
				attrs = append(attrs, Attr{k, v})
			}
		case "container_id":
			attrs = append(attrs, Attr{AttrContainerID, v})
		default:
			attrs = append(attrs, Attr{k, v})
		}
	}
	return attrs
}

// maxErrorBody bounds how much of an error answer is kept for the log.
const maxErrorBody = 1 << 10

// sendHTTP posts one request. A 200 may still carry a partial success
// whose rejected profiles would be rejected again: it is reported as a
// refusal (400), not retried.
func sendHTTP(ctx context.Context, c *pyroscope.Conn, endpoint string, data []byte) pyroscope.Result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(data))
	if err != nil {
		return pyroscope.Result{Err: fmt.Errorf("otlp: %w", err)}
	}
	c.SetAuth(req.Header)
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := c.Client.Do(req)
	if err != nil {
		return pyroscope.Result{Err: fmt.Errorf("otlp: export: %w", err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	r := pyroscope.Result{Status: resp.StatusCode, RetryAfter: c.RetryAfter(resp.Header.Get("Retry-After"))}
	if resp.StatusCode/100 != 2 {
		r.Err = fmt.Errorf("otlp: export: %s: %s", resp.Status, strings.TrimSpace(string(body[:min(len(body), maxErrorBody)])))
		return r
	}
	if err != nil {
		r.Err = fmt.Errorf("otlp: export: reading the answer: %w", err)
		return r
	}
	var er collpb.ExportProfilesServiceResponse
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-protobuf") {
		if err := proto.Unmarshal(body, &er); err != nil {
			r.Err = fmt.Errorf("otlp: export: decoding the answer: %w", err)
			return r
		}
	}
	return partial(r, er.GetPartialSuccess())
}

// sendGRPC makes one Export call, with the credentials as metadata.
func sendGRPC(ctx context.Context, c *pyroscope.Conn, client collpb.ProfilesServiceClient, data []byte) pyroscope.Result {
	var req collpb.ExportProfilesServiceRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		return pyroscope.Result{Status: http.StatusBadRequest, Err: fmt.Errorf("otlp: queued request: %w", err)}
	}
	h := http.Header{}
	c.SetAuth(h)
	md := metadata.MD{}
	for k, vs := range h {
		md.Append(strings.ToLower(k), vs...)
	}
	resp, err := client.Export(metadata.NewOutgoingContext(ctx, md), &req)
	if err != nil {
		st, _ := status.FromError(err)
		return pyroscope.Result{Status: httpStatus(st.Code()), Err: fmt.Errorf("otlp: export: %w", err)}
	}
	return partial(pyroscope.Result{Status: http.StatusOK}, resp.GetPartialSuccess())
}

// partial turns a partial success that rejected profiles into a refusal.
func partial(r pyroscope.Result, ps *collpb.ExportProfilesPartialSuccess) pyroscope.Result {
	if n := ps.GetRejectedProfiles(); n > 0 {
		r.Status = http.StatusBadRequest
		r.Err = fmt.Errorf("otlp: export: %d profiles rejected: %s", n, ps.GetErrorMessage())
	}
	return r
}

// httpStatus maps a gRPC code to the HTTP status the sink's retry policy
// reads. Retried are the codes OTLP's specification calls retryable
// (Unavailable, Aborted, OutOfRange, DataLoss, Canceled, DeadlineExceeded)
// and ResourceExhausted (429); any other code would fail the same way again.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Unavailable, codes.Aborted, codes.OutOfRange, codes.DataLoss, codes.Canceled:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound, codes.Unimplemented:
		return http.StatusNotFound
	case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists:
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}
