package agent

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/internal/proc"
)

// trimOwnText gives back the resident pages of the agent's own executable
// that are not writable (its code and read-only data): start-up runs code
// the agent never runs again (flag parsing, the BPF loader, BTF decoding,
// the capability probes), and those pages stayed resident, counted in the
// RSS the memory budget covers: about 18 MiB of the soak's test binary,
// 28% of the 64 MiB budget. The pages are clean copies of the file:
// MADV_DONTNEED only unmaps them, and the code the agent runs on faults
// back in from the page cache as it runs. Writable mappings (.data, .bss,
// their copy-on-write pages) are left alone: advising them would lose
// their contents. It returns the bytes of the mappings advised.
func trimOwnText() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("trim own text: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("trim own text: %w", err)
	}
	ms, err := proc.ParseMaps(f)
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("trim own text: %w", err)
	}
	var n int64
	for _, m := range ms {
		if m.Path != exe || strings.Contains(m.Perms, "w") || !strings.HasSuffix(m.Perms, "p") {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(m.Start), uintptr(m.Limit-m.Start), unix.MADV_DONTNEED); errno != 0 {
			return n, fmt.Errorf("trim own text: madvise %s %x-%x: %w", m.Perms, m.Start, m.Limit, errno)
		}
		n += int64(m.Limit - m.Start)
	}
	return n, nil
}
