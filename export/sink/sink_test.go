package sink

import (
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

func TestParseLabels(t *testing.T) {
	m, err := ParseLabels([]string{"env=prod", "region=eu-west-1", "empty="})
	if err != nil || len(m) != 3 || m["env"] != "prod" || m["region"] != "eu-west-1" || m["empty"] != "" {
		t.Errorf("ParseLabels = %v, %v", m, err)
	}
	for _, bad := range [][]string{{"novalue"}, {"1x=v"}, {"a-b=v"}, {"__name__=x"}, {"service_name=x"}, {"a=1", "a=2"}, {"=v"}} {
		if _, err := ParseLabels(bad); err == nil {
			t.Errorf("ParseLabels(%q) succeeded", bad)
		}
	}
}

func TestEndTime(t *testing.T) {
	now := time.Unix(1000, 0)
	at := time.Unix(500, 0)
	if got := (&Profile{Time: at}).EndTime(now); !got.Equal(at) {
		t.Errorf("EndTime with Time = %v", got)
	}
	p := &Profile{Profile: &profile.Profile{TimeNanos: 100e9, DurationNanos: 10e9}}
	if got := p.EndTime(now); !got.Equal(time.Unix(110, 0)) {
		t.Errorf("EndTime from the profile = %v, want 110s", got)
	}
	if got := (&Profile{Profile: &profile.Profile{}}).EndTime(now); !got.Equal(now) {
		t.Errorf("EndTime without times = %v, want now", got)
	}
}
