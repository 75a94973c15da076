package agent

import (
	"testing"
)

// TestTrimOwnText: trimming gives back resident pages of the executable
// (RssFile falls), and the program runs on (this test's code faults back in).
func TestTrimOwnText(t *testing.T) {
	before := residentFileBytes()
	n, err := trimOwnText()
	if err != nil {
		t.Fatal(err)
	}
	after := residentFileBytes()
	t.Logf("advised %d KiB of mappings; RssFile %d KiB before, %d KiB after", n>>10, before>>10, after>>10)
	if n == 0 {
		t.Fatal("no mapping of the executable advised")
	}
	if after >= before {
		t.Errorf("RssFile %d KiB after the trim, %d before: nothing given back", after>>10, before>>10)
	}
	// Still runs: a map and a goroutine need runtime code paged back in.
	done := make(chan map[int]int)
	go func() { done <- map[int]int{1: 2} }()
	if m := <-done; m[1] != 2 {
		t.Fatal("after the trim: wrong result")
	}
}
