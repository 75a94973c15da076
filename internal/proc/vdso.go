package proc

import (
	"errors"
	"fmt"
	"os"
)

// VDSOPath is the name the kernel gives the vDSO's mapping in /proc/PID/maps.
const VDSOPath = "[vdso]"

// maxVDSO bounds the image read: the vDSO is two to four pages.
const maxVDSO = 1 << 20

// ReadOwnVDSO returns the vDSO image mapped into Ember's own process. The
// kernel maps one image per ABI into every process (arch/x86/entry/vdso,
// vdso_image_64), so this is the ELF file, with its symbols and .eh_frame,
// of every native process's [vdso] mapping of the same size. It is read from
// memory: no file on disk holds it (vdso64.so exists only where the kernel's
// build tree is installed).
func ReadOwnVDSO() ([]byte, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, fmt.Errorf("read own vDSO: %w", err)
	}
	ms, _ := ParseMaps(f)
	f.Close()
	for _, m := range ms {
		if m.Path != VDSOPath || m.Limit-m.Start > maxVDSO {
			continue
		}
		mem, err := os.Open("/proc/self/mem")
		if err != nil {
			return nil, fmt.Errorf("read own vDSO: %w", err)
		}
		defer mem.Close()
		b := make([]byte, m.Limit-m.Start)
		if _, err := mem.ReadAt(b, int64(m.Start)); err != nil {
			return nil, fmt.Errorf("read own vDSO: %w", err)
		}
		return b, nil
	}
	return nil, errors.New("read own vDSO: no [vdso] mapping")
}
