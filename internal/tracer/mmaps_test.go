package tracer

import (
	"encoding/binary"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/internal/proc"
)

// TestMappingsRecordedFromExec runs /bin/true, which maps libc and exits in
// about a millisecond, long before anything could read its /proc/PID/maps,
// and checks that the process table knows it whole from the records: its
// executable, ld.so, libc, each with its file held. Reading /proc instead
// (the tracer before mmap records) knows nothing of it.
func TestMappingsRecordedFromExec(t *testing.T) {
	requireBPF(t)
	procs := proc.NewTable()
	defer procs.Close()
	tr, err := Start(Config{Frequency: 99, OnCPU: true}, procs)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	t.Logf("build IDs in mmap records: %v", tr.mmaps.buildIDs)
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(bin)
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	pid := c.Process.Pid
	var p *proc.Process
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if p = procs.Get(pid); p != nil && hasMapping(p, "libc.so") && hasMapping(p, filepath.Base(bin)) {
			break
		}
	}
	if p == nil {
		t.Fatalf("process %d (%s) unknown after its exit", pid, bin)
	}
	var names []string
	for _, m := range p.Mappings {
		names = append(names, m.Path)
		if m.Inode == 0 && strings.HasPrefix(m.Path, "/") {
			t.Errorf("mapping of %s without its inode", m.Path)
		}
	}
	t.Logf("process %d (%s): %s", pid, p.Comm, strings.Join(names, ", "))
	for _, want := range []string{filepath.Base(bin), "ld-linux", "libc.so", "[vdso]"} {
		if !hasMapping(p, want) {
			t.Errorf("no mapping of %s recorded for %s (pid %d): %v", want, bin, pid, names)
		}
	}
	if p.Comm != "true" {
		t.Errorf("comm %q, want true (the exec record's)", p.Comm)
	}
	for _, m := range p.Mappings {
		if m.Inode == 0 {
			continue
		}
		f, err := procs.Open(pid, &m)
		if err != nil {
			t.Errorf("%s of the exited process: %v", m.Path, err)
			continue
		}
		f.Close()
	}
	if n := tr.mmaps.lost.Load(); n > 0 {
		t.Logf("%d records lost", n)
	}
}

func hasMapping(p *proc.Process, name string) bool {
	for _, m := range p.Mappings {
		if strings.Contains(filepath.Base(m.Path), name) {
			return true
		}
	}
	return false
}

// TestDecodeMmapRecord decodes an mmap2 record with a build ID and one
// with device and inode, as the kernel lays them out.
func TestDecodeMmapRecord(t *testing.T) {
	le := binary.NativeEndian
	rec := func(misc uint16, fill func(b []byte), path string) []byte {
		n := 72 + (len(path)+8)&^7 + 8
		b := make([]byte, n)
		le.PutUint32(b[0:], unix.PERF_RECORD_MMAP2)
		le.PutUint16(b[4:], misc)
		le.PutUint16(b[6:], uint16(n))
		le.PutUint32(b[8:], 42)
		le.PutUint32(b[12:], 43)
		le.PutUint64(b[16:], 0x7f0000001000)
		le.PutUint64(b[24:], 0x2000)
		le.PutUint64(b[32:], 0x1000)
		fill(b)
		le.PutUint32(b[64:], unix.PROT_READ|unix.PROT_EXEC)
		le.PutUint32(b[68:], unix.MAP_PRIVATE)
		copy(b[72:], path)
		le.PutUint64(b[n-8:], 12345)
		return b
	}
	r, ok := decodeRecord(rec(unix.PERF_RECORD_MISC_MMAP_BUILD_ID, func(b []byte) {
		b[40] = 4
		copy(b[44:], []byte{0xde, 0xad, 0xbe, 0xef})
	}, "/usr/lib/libc.so.6"), true)
	if !ok || r.pid != 42 || r.tid != 43 || r.time != 12345 || string(r.buildID) != "\xde\xad\xbe\xef" ||
		r.m.Start != 0x7f0000001000 || r.m.Limit != 0x7f0000003000 || r.m.Offset != 0x1000 ||
		r.m.Perms != "r-xp" || r.m.Path != "/usr/lib/libc.so.6" || r.m.Inode != 0 {
		t.Errorf("build-ID record: %+v", r)
	}
	inode := func(b []byte) {
		le.PutUint32(b[40:], 8)
		le.PutUint32(b[44:], 300)
		le.PutUint64(b[48:], 777)
	}
	r, ok = decodeRecord(rec(0, inode, "//anon"), true)
	if !ok || r.m.Dev != unix.Mkdev(8, 300) || r.m.Inode != 777 || r.m.Path != "" || r.buildID != nil {
		t.Errorf("inode record: %+v", r)
	}
	// The misc bit on a record of the device and inode: not asked for
	// (a 6.18 build sets it so), or a size no build ID has (major 254).
	for _, c := range []struct {
		maj      uint32
		buildIDs bool
	}{{8, false}, {254, true}, {254, false}} {
		r, ok = decodeRecord(rec(unix.PERF_RECORD_MISC_MMAP_BUILD_ID, func(b []byte) {
			inode(b)
			le.PutUint32(b[40:], c.maj)
		}, "/usr/bin/true"), c.buildIDs)
		if !ok || r.buildID != nil || r.m.Dev != unix.Mkdev(c.maj, 300) || r.m.Inode != 777 {
			t.Errorf("misc build-ID bit on an inode record (major %d, asked %v): %+v", c.maj, c.buildIDs, r)
		}
	}
	if _, ok := decodeRecord(make([]byte, 20), true); ok {
		t.Error("a short record decoded")
	}
}

// FuzzDecodeRecord: no record the kernel's ring could hold, truncated or
// corrupt, panics the decoder; what it accepts stays within the record.
func FuzzDecodeRecord(f *testing.F) {
	le := binary.NativeEndian
	for _, typ := range []uint32{unix.PERF_RECORD_MMAP2, unix.PERF_RECORD_COMM, unix.PERF_RECORD_FORK,
		unix.PERF_RECORD_EXIT, unix.PERF_RECORD_LOST} {
		for _, n := range []int{0, 7, 8, 24, 32, 80, 96} {
			b := make([]byte, n)
			if n >= 8 {
				le.PutUint32(b, typ)
				le.PutUint16(b[6:], uint16(n))
			}
			f.Add(b)
		}
	}
	withID := make([]byte, 96)
	le.PutUint32(withID, unix.PERF_RECORD_MMAP2)
	le.PutUint16(withID[4:], unix.PERF_RECORD_MISC_MMAP_BUILD_ID)
	withID[40] = 255 // a size past the 20 bytes the field holds
	f.Add(withID)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok := decodeRecord(b, true)
		if ok && len(r.buildID) > 20 {
			t.Fatalf("build ID of %d bytes", len(r.buildID))
		}
	})
}

// TestExecRecordReadLate applies the records of a process's exec as two
// reads of the rings could deliver them when the process moved to another
// CPU during its exec: a mapping of its new image in one read, the exec's
// own record (older) in the next. The exec must not drop the mapping; an
// exec record newer than every mapping still starts the process afresh.
func TestExecRecordReadLate(t *testing.T) {
	bin, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(bin, "30")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Wait()
	defer c.Process.Kill()
	pid := c.Process.Pid
	procs := proc.NewTable()
	defer procs.Close()
	var exe *proc.Mapping
	for deadline := time.Now().Add(5 * time.Second); exe == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no executable mapping of %s in process %d", bin, pid)
		}
		if p, err := procs.Add(pid); err == nil {
			for i := range p.Mappings {
				if m := &p.Mappings[i]; m.Executable() && filepath.Base(m.Path) == filepath.Base(bin) {
					exe = m
				}
			}
		}
	}
	tr, images := &Tracer{procs: procs}, map[uint32]imageTimes{}
	mapped := mmapRecord{typ: unix.PERF_RECORD_MMAP2, time: 200, pid: uint32(pid), tid: uint32(pid), m: *exe}
	execAt := func(ns uint64) mmapRecord {
		return mmapRecord{typ: unix.PERF_RECORD_COMM, time: ns, pid: uint32(pid), tid: uint32(pid), exec: true, comm: "sleep"}
	}
	tr.applyMmapRecords([]mmapRecord{mapped}, images)
	tr.applyMmapRecords([]mmapRecord{execAt(100)}, images)
	if p := procs.Get(pid); p == nil || !hasMapping(p, filepath.Base(bin)) {
		t.Fatalf("an exec record read after a later mapping of the new image dropped it: %+v", p)
	}
	tr.applyMmapRecords([]mmapRecord{execAt(300)}, images)
	if p := procs.Get(pid); p == nil || len(p.Mappings) != 0 {
		t.Fatalf("an exec record newer than every mapping kept the old image's mappings: %+v", p)
	}
	// A mapping older than the exec applied is the old image's, read late.
	tr.applyMmapRecords([]mmapRecord{mapped}, images)
	if p := procs.Get(pid); p == nil || len(p.Mappings) != 0 {
		t.Fatalf("a mapping record older than the exec was applied: %+v", p)
	}
}
