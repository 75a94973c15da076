package symbolize

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/emberprof/ember/internal/testutil"
)

// jitdumpWriter writes jitdump files by the specification, in either byte
// order, for tests and fuzz seeds.
type jitdumpWriter struct {
	bo  binary.AppendByteOrder
	buf bytes.Buffer
}

func newJITDump(bo binary.AppendByteOrder, version, headerSize uint32) *jitdumpWriter {
	w := &jitdumpWriter{bo: bo}
	w.u32(jitdumpMagic, version, headerSize, 62, 0, 4242)
	w.u64(1, 0) // timestamp, flags
	for w.buf.Len() < int(headerSize) {
		w.buf.WriteByte(0)
	}
	return w
}

func (w *jitdumpWriter) u32(vs ...uint32) {
	for _, v := range vs {
		w.buf.Write(w.bo.AppendUint32(nil, v))
	}
}

func (w *jitdumpWriter) u64(vs ...uint64) {
	for _, v := range vs {
		w.buf.Write(w.bo.AppendUint64(nil, v))
	}
}

// record writes a record of id whose body is body.
func (w *jitdumpWriter) record(id uint32, body []byte) {
	w.u32(id, uint32(jitPrefixSize+len(body)))
	w.u64(7)
	w.buf.Write(body)
}

// load writes a code load of size bytes of code at addr.
func (w *jitdumpWriter) load(addr, size, index uint64, name string) {
	b := &jitdumpWriter{bo: w.bo}
	b.u32(4242, 4243)
	b.u64(addr, addr, size, index)
	b.buf.WriteString(name + "\x00")
	b.buf.Write(make([]byte, size))
	w.record(jitCodeLoad, b.buf.Bytes())
}

func (w *jitdumpWriter) move(from, to, size, index uint64) {
	b := &jitdumpWriter{bo: w.bo}
	b.u32(4242, 4243)
	b.u64(to, from, to, size, index)
	w.record(jitCodeMove, b.buf.Bytes())
}

// sample is a file with every kind of record: two loads, a move, debug
// and unwinding information, an unknown record, a close, and a load after
// it that is not read.
func (w *jitdumpWriter) sample() []byte {
	w.load(0x7f0000001000, 11, 1, "py::main:/app/x.py")
	w.record(4, make([]byte, 24+68)) // unwinding info
	w.load(0x7f0000001100, 32, 2, "py::<module>:/app/x.py")
	w.record(2, make([]byte, 40)) // debug info
	w.move(0x7f0000001000, 0x7f0000002000, 11, 1)
	w.record(99, []byte("a later version's record"))
	w.record(jitCodeClose, nil)
	w.load(0x7f0000003000, 8, 3, "after close")
	return w.buf.Bytes()
}

func jitNamesAt(t *testing.T, m *perfMap, addrs ...uint64) []string {
	t.Helper()
	var names []string
	for _, a := range addrs {
		f, _ := m.lookup(a)
		names = append(names, f.Function)
	}
	return names
}

func TestJITDumpRecords(t *testing.T) {
	for _, bo := range []binary.AppendByteOrder{binary.LittleEndian, binary.BigEndian} {
		data := newJITDump(bo, 1, jitdumpHeaderSize+8).sample()
		m, err := parseJITDump(bytes.NewReader(data), "jit-4242.dump")
		if err != nil {
			t.Fatalf("%v: %v", bo, err)
		}
		got := strings.Join(jitNamesAt(t, m, 0x7f0000001005, 0x7f0000001110, 0x7f0000002005, 0x7f0000003000), "|")
		if want := "py::main:/app/x.py|py::<module>:/app/x.py|py::main:/app/x.py|"; got != want {
			t.Errorf("%v: %q, want %q", bo, got, want)
		}
	}
}

// A file cut anywhere keeps the records written whole before the cut and
// is no error: the runtime is still writing it.
func TestJITDumpTruncated(t *testing.T) {
	w := newJITDump(binary.LittleEndian, 1, jitdumpHeaderSize)
	w.load(0x1000, 16, 1, "first")
	whole := w.buf.Len()
	w.load(0x2000, 16, 2, "second")
	data := w.buf.Bytes()
	for cut := 0; cut < len(data); cut++ {
		m, err := parseJITDump(bytes.NewReader(data[:cut]), "cut")
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		want := 0
		if cut >= whole {
			want = 1
		}
		if len(m.syms) != want {
			t.Fatalf("cut at %d: %d entries, want %d", cut, len(m.syms), want)
		}
	}
}

func TestJITDumpMalformed(t *testing.T) {
	le := binary.LittleEndian
	long := strings.Repeat("n", maxNameLen+100)
	w := newJITDump(le, 1, jitdumpHeaderSize)
	w.load(0x1000, 4, 1, long)
	w.load(0x2000, 4, 2, "after a long name")
	m, err := parseJITDump(bytes.NewReader(w.buf.Bytes()), "long")
	if err != nil || len(m.syms) != 2 || m.syms[0].name != long[:maxNameLen] || m.syms[1].name != "after a long name" {
		t.Fatalf("long name: %v, %d entries", err, len(m.syms))
	}

	bad := map[string][]byte{}
	bad["magic"] = []byte("7f0000001000 10 a perf map\n" + strings.Repeat(" ", 40))
	bad["version 2"] = newJITDump(le, 2, jitdumpHeaderSize).buf.Bytes()
	bad["short header"] = newJITDump(le, 1, 16).buf.Bytes()
	w = newJITDump(le, 1, jitdumpHeaderSize)
	w.u32(jitCodeLoad, 8)
	w.u64(0)
	bad["record smaller than its prefix"] = w.buf.Bytes()
	w = newJITDump(le, 1, jitdumpHeaderSize)
	w.record(jitCodeLoad, make([]byte, 20))
	bad["load without its fields"] = w.buf.Bytes()
	w = newJITDump(le, 1, jitdumpHeaderSize)
	body := &jitdumpWriter{bo: le}
	body.u32(1, 1)
	body.u64(0x1000, 0x1000, 0, 1)
	body.buf.WriteString("no NUL")
	w.record(jitCodeLoad, body.buf.Bytes())
	w.load(0x2000, 4, 2, "next")
	bad["name without NUL"] = w.buf.Bytes()
	w = newJITDump(le, 1, jitdumpHeaderSize)
	w.load(^uint64(0)-4, 8, 1, "wraps")
	bad["code wrapping"] = w.buf.Bytes()
	w = newJITDump(le, 1, jitdumpHeaderSize)
	w.record(jitCodeMove, make([]byte, 8))
	bad["move without its fields"] = w.buf.Bytes()
	for name, data := range bad {
		if _, err := parseJITDump(bytes.NewReader(data), name); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", name, err)
		}
	}

	// Nothing written yet, or part of the header: no names, no error.
	for _, n := range []int{0, 3, 20} {
		data := newJITDump(le, 1, jitdumpHeaderSize).buf.Bytes()[:n]
		if m, err := parseJITDump(bytes.NewReader(data), "new"); err != nil || len(m.syms) != 0 {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
}

// The symbolizer names JIT code from a jitdump file as from a perf map.
func TestSymbolizeJITDump(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jit-4242.dump")
	if err := os.WriteFile(path, newJITDump(binary.LittleEndian, 1, jitdumpHeaderSize).sample(), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &profile.Mapping{ID: 1, Start: 0x7f0000000000, Limit: 0x7f0000100000, File: path}
	p := &profile.Profile{Mapping: []*profile.Mapping{m}}
	for i, a := range []uint64{0x7f0000001005, 0x7f0000002005, 0x7f0000004000} {
		p.Location = append(p.Location, &profile.Location{ID: uint64(i + 1), Address: a, Mapping: m})
	}
	s := New(Options{})
	defer s.Close()
	if err := s.Symbolize(p); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"py::main:/app/x.py", "py::main:/app/x.py", ""} {
		got := ""
		if l := p.Location[i]; len(l.Line) > 0 {
			got = l.Line[0].Function.Name
		}
		if got != want {
			t.Errorf("%#x: %q, want %q", p.Location[i].Address, got, want)
		}
	}
}

// loadRecord is a code load as the test reads it, by the specification's
// offsets, apart from the parser: where its record ends in the file, its
// code address and its name.
type loadRecord struct {
	end  int
	addr uint64
	name string
}

func scanLoads(t *testing.T, data []byte) []loadRecord {
	t.Helper()
	var loads []loadRecord
	off := int(binary.LittleEndian.Uint32(data[8:]))
	for off+jitPrefixSize <= len(data) {
		id, size := binary.LittleEndian.Uint32(data[off:]), int(binary.LittleEndian.Uint32(data[off+4:]))
		if size < jitPrefixSize {
			t.Fatalf("record at %d: size %d", off, size)
		}
		if id == jitCodeLoad && off+size <= len(data) {
			name := data[off+56 : off+size]
			name = name[:bytes.IndexByte(name, 0)]
			loads = append(loads, loadRecord{off + size, binary.LittleEndian.Uint64(data[off+32:]), string(name)})
		}
		off += size
	}
	return loads
}

// TestJITDumpFromRealPython runs CPython 3.13+ with -X perf_jit and reads
// the jitdump file it writes: every code load, by address and name, as a
// reading by the specification's offsets finds them; and the file cut at
// every byte of its last records, as it is while the interpreter writes
// it, gives the loads written whole before the cut.
func TestJITDumpFromRealPython(t *testing.T) {
	python := testutil.PerfPython(t, 13)
	cmd := exec.Command(python, "-X", "perf_jit", "-c", "def fib(n):\n return n if n < 2 else fib(n-1)+fib(n-2)\nfib(20)")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd, err, out)
	}
	path := "/tmp/jit-" + strconv.Itoa(cmd.Process.Pid) + ".dump"
	defer os.Remove(path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("python -X perf_jit wrote no jitdump file: %v", err)
	}
	loads := scanLoads(t, data)
	m, err := parseJITDump(bytes.NewReader(data), path)
	if err != nil {
		t.Fatal(err)
	}
	named, fib := 0, false
	for _, l := range loads {
		if f, ok := m.lookup(l.addr); ok && f.Function == l.name {
			named++
		}
		fib = fib || strings.HasPrefix(l.name, "py::fib:")
	}
	t.Logf("%d of %d code loads in %d bytes named at their address", named, len(loads), len(data))
	if len(loads) == 0 || named != len(loads) || !fib {
		t.Errorf("%d of %d code loads named; py::fib found: %v", named, len(loads), fib)
	}
	for cut := max(int(binary.LittleEndian.Uint32(data[8:])), len(data)-600); cut <= len(data); cut++ {
		m, err := parseJITDump(bytes.NewReader(data[:cut]), path)
		if err != nil {
			t.Fatalf("cut at %d of %d: %v", cut, len(data), err)
		}
		want := 0
		for _, l := range loads {
			if l.end <= cut {
				want++
			}
		}
		if len(m.syms) != want {
			t.Fatalf("cut at %d of %d: %d entries, want %d", cut, len(data), len(m.syms), want)
		}
	}
}
