package flamegraph

import (
	"bytes"
	"os"
	"sync"
)

// lockedBuffer is a bytes.Buffer safe for a child's output copier.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func writeFile(path string, data []byte) error { return os.WriteFile(path, data, 0o644) }
