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
// the kernel can never take back. So the sections are decompressed straight
// into an unlinked file in spillDir, mapped: clean file pages once written
// back, read in as lookups need them and reclaimable under pressure; after
// the unit index is built (which reads every unit header) the mapping's
// pages are given back (MADV_DONTNEED), and a lookup faults in the one unit
// it parses. Decompressed on the heap and then written out, a section was
// held twice while the index was built, and its heap copy stayed resident
// until the runtime's scavenger returned it: 5.6 MiB of the 64 MiB soak's
// heap at its first interval. Where spillDir cannot be written (a read-only
// root, a full disk), the heap as before; and where it is in memory (tmpfs,
// ramfs: /tmp on many distributions), the heap too, for a file there is
// memory the kernel cannot reclaim without swap, charged to the agent's
// memory cgroup all the same: spilling would only hide it from RSS.

// spillDir is where decompressed sections are spilled; "" keeps them on the
// heap. Tests set it.
var spillDir = os.TempDir()

// spillBuffer returns n writable bytes mapped from a new unlinked file in
// spillDir, for a section to be decompressed into, and true; or nil and
// false when no such file can be made. The file's blocks are allocated
// first (fallocate): a store into a mapped hole of a full filesystem would
// be a SIGBUS, not an error. The caller seals the buffer once it is filled.
func spillBuffer(n int) ([]byte, bool) {
	if spillDir == "" || n <= 0 || inMemoryFS(spillDir) {
		return nil, false
	}
	f, err := os.CreateTemp(spillDir, "ember-section-*")
	if err != nil {
		return nil, false
	}
	defer f.Close()
	os.Remove(f.Name())
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(n)); err != nil {
		return nil, false
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, false
	}
	return m, true
}

// spillInto returns the buffer function newDWARFIndex decompresses into: a
// spill buffer, remembered in *spilled, else the heap.
func spillInto(spilled *[][]byte) func(int) []byte {
	return func(n int) []byte {
		if m, ok := spillBuffer(n); ok {
			*spilled = append(*spilled, m)
			return m
		}
		return heapBuffer(n)
	}
}

// seal makes filled spill buffers read-only, as the sections they hold are
// to every reader. (A refusal leaves them writable: nothing writes them.)
func seal(ms [][]byte) {
	for _, m := range ms {
		_ = syscall.Mprotect(m, syscall.PROT_READ)
	}
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
