package proc

import (
	"os"
	"strings"
	"testing"
)

func TestParseMaps(t *testing.T) {
	in := `55d0c8a00000-55d0c8a28000 r--p 00000000 fe:01 1835036                    /usr/bin/bash
55d0c8a28000-55d0c8ae9000 r-xp 00028000 fe:01 1835036                    /usr/bin/bash
7f1e2c000000-7f1e2c021000 rw-p 00000000 00:00 0 
7ffd5a1f0000-7ffd5a211000 rw-p 00000000 00:00 0                          [stack]
7f00aa000000-7f00aa001000 r-xp 00001000 00:05 42                         /memfd:jit (deleted)
garbage line
`
	ms, err := ParseMaps(strings.NewReader(in))
	if err == nil || !strings.Contains(err.Error(), "line 6") {
		t.Errorf("want an error naming line 6, got %v", err)
	}
	if len(ms) != 5 {
		t.Fatalf("got %d mappings, want 5", len(ms))
	}
	m := ms[1]
	if m.Start != 0x55d0c8a28000 || m.Limit != 0x55d0c8ae9000 || m.Offset != 0x28000 ||
		m.Dev != 0xfe01 || m.Inode != 1835036 || m.Path != "/usr/bin/bash" || !m.Executable() {
		t.Errorf("mapping 1 = %+v", m)
	}
	if ms[2].Path != "" || ms[3].Path != "[stack]" {
		t.Errorf("anonymous/stack paths: %q %q", ms[2].Path, ms[3].Path)
	}
	if !ms[4].Deleted() || ms[4].Path != "/memfd:jit (deleted)" {
		t.Errorf("deleted mapping = %+v", ms[4])
	}
}

func TestParseMapsSelf(t *testing.T) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms, err := ParseMaps(f)
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	found := false
	for _, m := range ms {
		if m.Path == exe && m.Executable() {
			found = true
		}
	}
	if !found {
		t.Errorf("no executable mapping of %s among %d", exe, len(ms))
	}
}

func FuzzParseMaps(f *testing.F) {
	f.Add([]byte("55d0c8a28000-55d0c8ae9000 r-xp 00028000 fe:01 1835036 /usr/bin/bash\n"))
	f.Add([]byte("0-1 r 0 0:0 0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, _ := ParseMaps(strings.NewReader(string(data)))
		for _, m := range ms {
			if m.Limit < m.Start {
				t.Fatalf("limit below start: %+v", m)
			}
		}
	})
}
