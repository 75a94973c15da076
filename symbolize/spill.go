package symbolize

import (
	"os"
	"syscall"
)

// A compressed debug section is decompressed whole (decompress.go), and its
// bytes are then read for as long as the file stays in the cache: glibc's
// separate debug file (Debian's, zstd) is 8 MiB decompressed. On the Go heap
// that was the agent's largest single holding (7.7-9.7 MiB in the soak's
// heap profiles, half its symbol cache at 128 MiB, all of it at 64), memory
// the kernel can never take back. So the decompressed bytes are written to
// an unlinked file in spillDir and mapped from it: clean file pages, read in
// as lookups need them and reclaimable under pressure; after the unit index
// is built (which reads every unit header) the mapping's pages are given
// back (MADV_DONTNEED), and a lookup faults in the one unit it parses. Where
// spillDir cannot be written (a read-only root), the heap as before; and where
// it is in memory (tmpfs, ramfs: /tmp on many distributions), the heap too,
// for a file there is memory the kernel cannot reclaim without swap, charged
// to the agent's memory cgroup all the same: spilling would only hide it from
// RSS.

// spillDir is where decompressed sections are spilled; "" keeps them on the
// heap. Tests set it.
var spillDir = os.TempDir()

// spill returns b's bytes mapped from an unlinked file, and true; or b, and
// false, when no file can be written. b is the caller's to drop.
func spill(b []byte) ([]byte, bool) {
	if spillDir == "" || len(b) == 0 || inMemoryFS(spillDir) {
		return b, false
	}
	f, err := os.CreateTemp(spillDir, "ember-section-*")
	if err != nil {
		return b, false
	}
	defer f.Close()
	os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		return b, false
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, len(b), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return b, false
	}
	return m, true
}

// Filesystems whose files live in memory (statfs(2)'s f_type).
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

// inMemoryFS reports whether dir's files are kept in memory, or cannot be
// told (then nothing is spilled there either).
func inMemoryFS(dir string) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return true
	}
	return st.Type == tmpfsMagic || st.Type == ramfsMagic
}

// giveBack drops the pages of spilled mappings from this process's memory;
// they are read again from the file when touched. (A refusal leaves them
// resident: nothing is lost but the saving.)
func giveBack(ms [][]byte) {
	for _, m := range ms {
		_ = syscall.Madvise(m, syscall.MADV_DONTNEED)
	}
}
