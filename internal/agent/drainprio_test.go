package agent

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/internal/testutil"
)

// threadNice reads the nice value of thread tid (field 19 of its stat).
func threadNice(t *testing.T, tid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, err := strconv.Atoi(f[16])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBoostDrainThread: the drain's thread runs drainBoost nicer than it
// did, and gets its old priority back when the drain ends.
func TestBoostDrainThread(t *testing.T) {
	testutil.RequireRoot(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tid := unix.Gettid()
		runtime.LockOSThread() // the same thread across the boost and after it
		defer runtime.UnlockOSThread()
		before := threadNice(t, tid)
		restore, err := boostDrainThread()
		if err != nil {
			t.Error(err)
			return
		}
		if got := threadNice(t, tid); got != max(before-drainBoost, -20) {
			t.Errorf("nice %d while draining, want %d", got, before-drainBoost)
		}
		restore()
		if got := threadNice(t, tid); got != before {
			t.Errorf("nice %d after the drain, want %d back", got, before)
		}
	}()
	<-done
}
