package agent

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/symbolize"
	"github.com/emberprof/ember/symbolize/debuginfod"
)

// DefaultDebuginfodWait is how long `record` waits at the end for debug files
// it asked debuginfod for: long enough for a few hundred MB on a good link,
// short enough that a dead server only delays the profile, never loses it.
const DefaultDebuginfodWait = 30 * time.Second

// fetchDebugInfo asks src for the debug files (and unreadable executables)
// of p's mappings and waits for them up to wait, before record symbolizes.
// Two rounds: an executable fetched in the first has its debug file asked
// for in the second. It reports on stderr what was fetched.
func fetchDebugInfo(sym *symbolize.Symbolizer, src *debuginfod.Client, p *profile.Profile, wait time.Duration, stderr *os.File) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	pending := 0
	for range 2 {
		sym.Prefetch(p)
		if pending = src.Wait(ctx); pending > 0 {
			break
		}
	}
	st := src.Stats()
	fetched := st.Fetches[debuginfod.ResultFetched]
	failed := st.Fetches[debuginfod.ResultNotFound] + st.Fetches[debuginfod.ResultInvalid] +
		st.Fetches[debuginfod.ResultTooLarge] + st.Fetches[debuginfod.ResultError] + st.Fetches[debuginfod.ResultDropped]
	if fetched+failed+st.CacheHits == 0 && pending == 0 {
		return
	}
	fmt.Fprintf(stderr, "ember: debuginfod: %d files fetched (%.1f MB), %d from the cache, %d not available, %d still pending after %v (cache %s)\n",
		fetched, float64(st.FetchedBytes)/1e6, st.CacheHits, failed, pending, time.Since(start).Round(time.Millisecond), src.CacheDir())
}

// debugSource returns c as a symbolize.DebugSource, nil when c is nil (a nil
// *Client in the interface would not compare equal to nil).
func debugSource(c *debuginfod.Client) symbolize.DebugSource {
	if c == nil {
		return nil
	}
	return c
}
