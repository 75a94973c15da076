package folded

import (
	"bytes"
	"testing"

	"github.com/emberprof/ember/export/internal/synth"
)

func TestWriteDiff(t *testing.T) {
	newer := synth.Known()
	newer.Sample[1].Value = []int64{9, 9 * synth.Period}
	for _, tc := range []struct {
		opts DiffOptions
		want string
	}{
		{DiffOptions{Options: Options{SampleType: "samples"}, NoNormalize: true}, `main;libstripped.so+0x1234 1 1
main;run;compute 3 9
main;run;compute;helper 9 9
main;run;read;entry_SYSCALL_64;ksys_read;vfs_read 2 2
`},
		// Normalised: base scaled by 21/15 = 1.4, rounded per line.
		{DiffOptions{Options: Options{SampleType: "samples"}}, `main;libstripped.so+0x1234 1 1
main;run;compute 4 9
main;run;compute;helper 13 9
main;run;read;entry_SYSCALL_64;ksys_read;vfs_read 3 2
`},
	} {
		var buf bytes.Buffer
		if err := WriteDiff(&buf, synth.Known(), newer, tc.opts); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tc.want {
			t.Errorf("%+v: got\n%s\nwant\n%s", tc.opts, buf.String(), tc.want)
		}
	}
}
