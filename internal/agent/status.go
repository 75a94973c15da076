package agent

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// statusLine redraws one line on a terminal: elapsed, samples, lost.
func statusLine(w io.Writer, elapsed time.Duration, samples, lost uint64) {
	fmt.Fprintf(w, "\r\033[Kember: %s elapsed, %d samples, %d lost", elapsed.Truncate(time.Second), samples, lost)
}
