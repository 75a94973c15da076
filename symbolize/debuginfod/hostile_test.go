package debuginfod_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emberprof/ember/symbolize"
	"github.com/emberprof/ember/symbolize/debuginfod"
)

// TestHostileAnswers: a server that answers badly for one binary's build ID
// (garbage, a file cut short, another binary's debug file, an endless file,
// or no answer at all) costs that binary its names and nothing else: the
// other binary, in the same profile, is named through the real server, which
// is asked after the bad one. A real debuginfod cannot be made to misbehave,
// so the bad server is a small local handler.
func TestHostileAnswers(t *testing.T) {
	work, srv := t.TempDir(), t.TempDir()
	bad := buildBinary(t, work, "victim", 8)
	good := buildBinary(t, work, "bystander", 9)
	copyFile(t, good.debug, filepath.Join(srv, "bystander.debug"))
	real := startDebuginfod(t, srv)
	badDebug, err := os.ReadFile(bad.debug)
	if err != nil {
		t.Fatal(err)
	}
	goodDebug, err := os.ReadFile(good.debug)
	if err != nil {
		t.Fatal(err)
	}
	const maxFile = 1 << 20
	for _, tc := range []struct {
		name     string
		serve    func(w http.ResponseWriter, r *http.Request)
		result   string
		negative bool // a negative entry is written
	}{
		{"garbage", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(strings.Repeat("this is not ELF\n", 512)))
		}, debuginfod.ResultInvalid, true},
		{"truncated", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(badDebug)))
			_, _ = w.Write(badDebug[:len(badDebug)/2]) // then the connection closes
		}, debuginfod.ResultInvalid, true},
		{"truncated-chunked", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write(badDebug[:len(badDebug)/3]) // no length: only the ELF check can tell
		}, debuginfod.ResultInvalid, true},
		{"wrong-build-id", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write(goodDebug)
		}, debuginfod.ResultInvalid, true},
		{"huge-declared", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(1<<40))
			_, _ = w.Write(badDebug)
		}, debuginfod.ResultTooLarge, true},
		{"huge-streamed", func(w http.ResponseWriter, r *http.Request) {
			buf := make([]byte, 64<<10)
			for r.Context().Err() == nil {
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		}, debuginfod.ResultTooLarge, true},
		{"hang", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, debuginfod.ResultError, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.URL.Path, "/"+bad.buildID+"/") {
					tc.serve(w, r)
					return
				}
				_, _ = io.Copy(io.Discard, r.Body)
				http.NotFound(w, r)
			}))
			defer hostile.Close()
			cacheDir := t.TempDir()
			c := newClient(t, debuginfod.Config{URLs: []string{hostile.URL, real.url}, CacheDir: cacheDir,
				Timeout: 2 * time.Second, MaxFileBytes: maxFile})
			sym := symbolize.New(symbolize.Options{DebugDirs: []string{}, DebugSource: c})
			defer sym.Close()
			sym.Prefetch(profileOf(bad, good))
			waitFetches(t, c)
			p := profileOf(bad, good)
			_ = sym.Symbolize(p)
			if name, _ := leafFrame(p, 0); name == "ember_leaf" {
				t.Fatalf("the victim was named from a bad answer")
			}
			if name, line := leafFrame(p, 1); name != "ember_leaf" || line != good.leafLine {
				t.Fatalf("bystander: %s:%d, want ember_leaf:%d", name, line, good.leafLine)
			}
			st := c.Stats()
			if st.Fetches[tc.result] != 1 || st.Fetches[debuginfod.ResultFetched] != 1 {
				t.Fatalf("fetches %v, want one %s and one fetched", st.Fetches, tc.result)
			}
			fi, err := os.Stat(filepath.Join(cacheDir, bad.buildID, "debuginfo"))
			switch {
			case tc.negative && (err != nil || fi.Size() != 0):
				t.Fatalf("want a negative entry for the victim, got %v %v", fi, err)
			case !tc.negative && err == nil:
				t.Fatalf("a passing failure left a cache entry (size %d)", fi.Size())
			}
			// Nothing but the two build IDs' directories: no partial files.
			ents, _ := os.ReadDir(filepath.Join(cacheDir, bad.buildID))
			for _, e := range ents {
				if e.Name() != "debuginfo" {
					t.Errorf("left behind in the cache: %s", e.Name())
				}
			}
		})
	}
}
