package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/emberprof/ember/export/filesink"
	"github.com/emberprof/ember/export/otlp"
	"github.com/emberprof/ember/export/pyroscope"
)

func TestPyroscopeFlags(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("tok-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(pyroscope.EnvBasicPassword, "pw-from-env")
	var f pyroscopeFlags
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse([]string{"--pyroscope-url=https://p:4040", "--pyroscope-bearer-token-file=" + tok,
		"--pyroscope-tenant-id=t1", "--pyroscope-header=X-A=1", "--pyroscope-header=X-B=2=3"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.Config()
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Auth
	if cfg.URL != "https://p:4040" || a.BearerToken.Value() != "tok-from-file" || a.BasicPassword != "" ||
		a.TenantID != "t1" || a.Headers["X-A"].Value() != "1" || a.Headers["X-B"].Value() != "2=3" ||
		cfg.QueueBytes != pyroscope.DefaultQueueBytes || len(cfg.DropSampleLabels) != 2 {
		t.Errorf("config %+v from flags", cfg)
	}

	f = pyroscopeFlags{BasicUser: "u"}
	if cfg, err = f.Config(); err != nil || cfg.Auth.BasicPassword.Value() != "pw-from-env" {
		t.Errorf("password from the environment: %v, %v", cfg.Auth.BasicPassword.Value(), err)
	}
	f = pyroscopeFlags{Headers: []string{"novalue"}}
	if _, err := f.Config(); err == nil {
		t.Error("a header without a value was accepted")
	}
	f = pyroscopeFlags{BearerToken: "a", TokenFile: tok}
	if _, err := f.Config(); err == nil {
		t.Error("a token by flag and by file was accepted")
	}
}

// TestOTLPFlagsConfig: the --otlp-* flags are checked before the agent starts.
func TestOTLPFlagsConfig(t *testing.T) {
	ok := otlpFlags{Endpoint: "http://127.0.0.1:4040", Protocol: otlp.ProtocolGRPC, QueueBytes: 1 << 20, Headers: []string{"X-Scope-OrgID=t"}}
	if c, err := ok.Config(); err != nil || c.Auth.Headers["X-Scope-OrgID"].Value() != "t" {
		t.Fatalf("valid flags: %+v, %v", c, err)
	}
	for name, mod := range map[string]func(f *otlpFlags){
		"scheme":         func(f *otlpFlags) { f.Endpoint = "grpc://host:4317" },
		"no host":        func(f *otlpFlags) { f.Endpoint = "http://" },
		"protocol":       func(f *otlpFlags) { f.Protocol = "http/json" },
		"grpc path":      func(f *otlpFlags) { f.Endpoint = "http://host:4317/v1development/profiles" },
		"header":         func(f *otlpFlags) { f.Headers = []string{"novalue"} },
		"ca without tls": func(f *otlpFlags) { f.CAFile = "/etc/ssl/ca.pem" },
		"queue":          func(f *otlpFlags) { f.QueueBytes = 0 },
	} {
		f := ok
		mod(&f)
		if _, err := f.Config(); err == nil {
			t.Errorf("%s: accepted %+v", name, f)
		}
	}
	f := ok
	f.Protocol, f.Endpoint = otlp.ProtocolHTTP, "https://host/custom/path"
	if _, err := f.Config(); err != nil {
		t.Errorf("an HTTP endpoint with its own path: %v", err)
	}
}

func TestFileSinkFlags(t *testing.T) {
	var f fileSinkFlags
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	f.Register(fs)
	if err := fs.Parse([]string{"--output-dir=/d", "--output-max-age=24h"}); err != nil {
		t.Fatal(err)
	}
	if c := f.Config(); c.Dir != "/d" || c.MaxAge != 24*time.Hour || c.MaxBytes != filesink.DefaultMaxBytes {
		t.Errorf("config %+v", c)
	}
}
