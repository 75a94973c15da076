package pyroscope

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
)

func TestFlags(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("tok-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvBasicPassword, "pw-from-env")
	var f Flags
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
		cfg.QueueBytes != DefaultQueueBytes || len(cfg.DropSampleLabels) != 2 {
		t.Errorf("config %+v from flags", cfg)
	}

	f = Flags{BasicUser: "u"}
	if cfg, err = f.Config(); err != nil || cfg.Auth.BasicPassword.Value() != "pw-from-env" {
		t.Errorf("password from the environment: %v, %v", cfg.Auth.BasicPassword.Value(), err)
	}
	f = Flags{Headers: []string{"novalue"}}
	if _, err := f.Config(); err == nil {
		t.Error("a header without a value was accepted")
	}
	f = Flags{BearerToken: "a", TokenFile: tok}
	if _, err := f.Config(); err == nil {
		t.Error("a token by flag and by file was accepted")
	}
}
