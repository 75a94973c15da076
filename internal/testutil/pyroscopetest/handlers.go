package pyroscopetest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/pprof/profile"
	pushv1 "github.com/grafana/pyroscope/api/gen/proto/go/push/v1"
	"github.com/grafana/pyroscope/api/gen/proto/go/push/v1/pushv1connect"
)

func newPushHandler(s *Server) (string, http.Handler) {
	return pushv1connect.NewPusherServiceHandler(&pusher{s: s})
}

type pusher struct{ s *Server }

// Push accepts a request whole or refuses it whole, as Pyroscope's
// distributor does when one of its profiles fails validation.
func (p *pusher) Push(ctx context.Context, req *connect.Request[pushv1.PushRequest]) (*connect.Response[pushv1.PushResponse], error) {
	out, _ := ctx.Value(ctxKey{}).(*outcome)
	var accepted []Series
	now := time.Now()
	for _, ser := range req.Msg.Series {
		labels, err := checkLabels(ser)
		if err == nil && len(ser.Samples) == 0 {
			err = errors.New("series without samples")
		}
		for _, raw := range ser.Samples {
			if err != nil {
				break
			}
			var prof *profile.Profile
			var size int
			prof, size, err = decode(raw.RawProfile)
			if err == nil {
				err = checkProfile(prof, size, now)
			}
			accepted = append(accepted, Series{Endpoint: "push", Labels: labels, ID: raw.ID, Profile: prof, RawSize: size, Time: now})
		}
		if err != nil {
			if out != nil {
				out.err = err.Error()
			}
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
	}
	if out != nil {
		out.accepted = accepted
	}
	return connect.NewResponse(&pushv1.PushResponse{}), nil
}

var (
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
)

// checkLabels validates a series' labels as Pyroscope's ValidateLabels
// does, with its default limits.
func checkLabels(ser *pushv1.RawProfileSeries) (map[string]string, error) {
	if len(ser.Labels) == 0 {
		return nil, errors.New("no labels")
	}
	if len(ser.Labels) > 30 {
		return nil, fmt.Errorf("%d label names, limit 30", len(ser.Labels))
	}
	m := make(map[string]string, len(ser.Labels))
	for _, l := range ser.Labels {
		switch {
		case !labelNameRE.MatchString(l.Name):
			return nil, fmt.Errorf("invalid label name %q", l.Name)
		case len(l.Name) > 1024:
			return nil, fmt.Errorf("label name %q too long", l.Name)
		case len(l.Value) > 2048:
			return nil, fmt.Errorf("label %s: value too long", l.Name)
		}
		if _, dup := m[l.Name]; dup {
			return nil, fmt.Errorf("duplicate label name %q", l.Name)
		}
		m[l.Name] = l.Value
	}
	if !metricNameRE.MatchString(m["__name__"]) {
		return nil, fmt.Errorf("invalid or missing __name__ %q", m["__name__"])
	}
	if m["service_name"] == "" {
		return nil, errors.New("service name is not provided")
	}
	return m, nil
}

// decode parses a pprof profile, gzipped or not, and returns its
// uncompressed size. Reading stops past the size limit.
func decode(raw []byte) (*profile.Profile, int, error) {
	data := raw
	if len(raw) > 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, 0, fmt.Errorf("gzip: %w", err)
		}
		data, err = io.ReadAll(io.LimitReader(zr, MaxProfileBytes+1))
		if err != nil {
			return nil, 0, fmt.Errorf("gzip: %w", err)
		}
	}
	if len(data) > MaxProfileBytes {
		return nil, len(data), fmt.Errorf("profile exceeds the size limit (max_profile_size_byte, actual: >%d, limit: %d)", MaxProfileBytes, MaxProfileBytes)
	}
	p, err := profile.ParseData(data)
	if err != nil {
		return nil, len(data), fmt.Errorf("malformed profile: %w", err)
	}
	return p, len(data), nil
}

// checkProfile applies Pyroscope's per-profile limits.
func checkProfile(p *profile.Profile, size int, now time.Time) error {
	if n := len(p.Sample); n > MaxSamples {
		return fmt.Errorf("profile exceeds the samples count limit (max_profile_stacktrace_samples, actual: %d, limit: %d)", n, MaxSamples)
	}
	if p.TimeNanos != 0 && now.Sub(time.Unix(0, p.TimeNanos)) > MaxAge {
		return fmt.Errorf("profile is older than %v", MaxAge)
	}
	for _, st := range p.SampleType {
		if strings.Contains(st.Type, "-") {
			return errors.New("sample type contains -")
		}
	}
	return nil
}

// ingest serves the legacy /ingest endpoint in the form pyroscope-go uses:
// name=app{k=v,...} in the query and the pprof in a multipart "profile" part.
func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	out, _ := r.Context().Value(ctxKey{}).(*outcome)
	fail := func(code int, err error) {
		if out != nil {
			out.err = err.Error()
		}
		http.Error(w, err.Error(), code)
	}
	if r.Method != http.MethodPost {
		fail(http.StatusMethodNotAllowed, errors.New("POST only"))
		return
	}
	labels, err := parseIngestName(r.URL.Query().Get("name"))
	if err != nil {
		fail(http.StatusBadRequest, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 2*MaxProfileBytes)
	f, _, err := r.FormFile("profile")
	if err != nil {
		fail(http.StatusBadRequest, fmt.Errorf("multipart profile: %w", err))
		return
	}
	defer f.Close()
	raw, err := io.ReadAll(f)
	if err != nil {
		fail(http.StatusBadRequest, err)
		return
	}
	prof, size, err := decode(raw)
	if err == nil {
		err = checkProfile(prof, size, time.Now())
	}
	if err != nil {
		fail(http.StatusBadRequest, err)
		return
	}
	labels["__name__"] = legacyName(prof)
	if out != nil {
		out.accepted = []Series{{Endpoint: "ingest", Labels: labels, Profile: prof, RawSize: size, Time: time.Now()}}
	}
	w.WriteHeader(http.StatusOK)
}

// parseIngestName splits "app{k=v,k2=v2}" into labels, app as service_name.
func parseIngestName(name string) (map[string]string, error) {
	app, rest, hasLabels := strings.Cut(name, "{")
	if app == "" {
		return nil, fmt.Errorf("ingest: bad name %q", name)
	}
	m := map[string]string{"service_name": app}
	if !hasLabels {
		return m, nil
	}
	rest, ok := strings.CutSuffix(rest, "}")
	if !ok {
		return nil, fmt.Errorf("ingest: bad name %q", name)
	}
	for kv := range strings.SplitSeq(rest, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("ingest: bad label %q in name", kv)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m, nil
}

// legacyName is the profile name a Pyroscope server gives a pprof uploaded
// to /ingest: by its sample types. Any type mentioning cpu makes it
// process_cpu, which is why Ember sends off-CPU profiles through the push
// API instead.
func legacyName(p *profile.Profile) string {
	has := func(sub string) bool {
		for _, st := range p.SampleType {
			if strings.Contains(st.Type, sub) {
				return true
			}
		}
		return false
	}
	switch {
	case has("cpu"):
		return "process_cpu"
	case has("alloc_") || has("inuse_"):
		return "memory"
	case has("goroutine"):
		return "goroutines"
	case has("contentions") || has("delay"):
		return "block"
	}
	if len(p.SampleType) > 0 {
		return p.SampleType[0].Type
	}
	return "unknown"
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// Total returns the sum of p's values of the given sample type, or -1 if p
// has no such sample type.
func Total(p *profile.Profile, sampleType string) int64 {
	for i, st := range p.SampleType {
		if st.Type == sampleType {
			var t int64
			for _, s := range p.Sample {
				t += s.Value[i]
			}
			return t
		}
	}
	return -1
}
