package proc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/symbolize/objfile"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, Limit uint64 // [Start, Limit) in the process's address space
	Offset       uint64 // file offset of Start
	Perms        string // "r-xp"
	Dev          uint64 // the device, encoded as stat(2)'s st_dev (unix.Mkdev)
	Inode        uint64
	Path         string // file path, "[vdso]", "[heap]", or "" for anonymous
	// BuildID is the file's GNU build ID (hex) where the kernel gave it
	// with the mapping's mmap record (Table.Mapped); "" otherwise.
	BuildID string
}

// Executable reports whether the mapping is mapped executable.
func (m *Mapping) Executable() bool { return len(m.Perms) > 2 && m.Perms[2] == 'x' }

// FileID is how the mapping names its file before it is opened: the key
// of the object file cache (objfile.Cache) that holds it.
func (m *Mapping) FileID() objfile.FileID { return objfile.FileID{Dev: m.Dev, Inode: m.Inode} }

// Deleted reports whether the file was deleted after it was mapped.
func (m *Mapping) Deleted() bool { return strings.HasSuffix(m.Path, " (deleted)") }

// ErrMalformed is returned (wrapped) for a maps line that does not parse.
var ErrMalformed = errors.New("malformed maps line")

// maxMapsLine bounds one line; the kernel prints paths of at most PATH_MAX.
const maxMapsLine = 4096 + 128

// ParseMaps parses the contents of a /proc/PID/maps file. Lines that do not
// parse are skipped and reported in the returned error, joined; the mappings
// that did parse are returned in any case.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxMapsLine)
	var (
		out  []Mapping
		errs []error
		n    int
	)
	for sc.Scan() {
		n++
		m, err := parseMapsLine(sc.Bytes())
		if err != nil {
			if len(errs) < 8 {
				errs = append(errs, fmt.Errorf("line %d: %w", n, err))
			}
			continue
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("read maps: %w", err))
	}
	return out, errors.Join(errs...)
}

// parseMapsLine parses "start-limit perms offset major:minor inode   path".
func parseMapsLine(line []byte) (Mapping, error) {
	var m Mapping
	fields := make([][]byte, 0, 6)
	rest := line
	for len(fields) < 5 {
		rest = bytes.TrimLeft(rest, " ")
		i := bytes.IndexByte(rest, ' ')
		if i < 0 {
			if len(rest) > 0 {
				fields = append(fields, rest)
			}
			rest = nil
			break
		}
		fields = append(fields, rest[:i])
		rest = rest[i+1:]
	}
	if len(fields) < 5 {
		return m, fmt.Errorf("%w: %d fields", ErrMalformed, len(fields))
	}
	addr := fields[0]
	dash := bytes.IndexByte(addr, '-')
	if dash < 0 {
		return m, fmt.Errorf("%w: address range %q", ErrMalformed, addr)
	}
	var err error
	if m.Start, err = strconv.ParseUint(string(addr[:dash]), 16, 64); err != nil {
		return m, fmt.Errorf("%w: start: %w", ErrMalformed, err)
	}
	if m.Limit, err = strconv.ParseUint(string(addr[dash+1:]), 16, 64); err != nil {
		return m, fmt.Errorf("%w: limit: %w", ErrMalformed, err)
	}
	if m.Limit < m.Start {
		return m, fmt.Errorf("%w: limit below start", ErrMalformed)
	}
	m.Perms = string(fields[1])
	if m.Offset, err = strconv.ParseUint(string(fields[2]), 16, 64); err != nil {
		return m, fmt.Errorf("%w: offset: %w", ErrMalformed, err)
	}
	dev := fields[3]
	colon := bytes.IndexByte(dev, ':')
	if colon < 0 {
		return m, fmt.Errorf("%w: device %q", ErrMalformed, dev)
	}
	major, err1 := strconv.ParseUint(string(dev[:colon]), 16, 32)
	minor, err2 := strconv.ParseUint(string(dev[colon+1:]), 16, 32)
	if err1 != nil || err2 != nil {
		return m, fmt.Errorf("%w: device %q", ErrMalformed, dev)
	}
	// Encoded as st_dev is, so that it compares with a stat of the file:
	// major<<8|minor collided once a minor passed 255 (overlayfs and other
	// anonymous devices: 0:256 was 1:0).
	m.Dev = unix.Mkdev(uint32(major), uint32(minor))
	if m.Inode, err = strconv.ParseUint(string(fields[4]), 10, 64); err != nil {
		return m, fmt.Errorf("%w: inode: %w", ErrMalformed, err)
	}
	m.Path = string(bytes.TrimLeft(rest, " "))
	return m, nil
}
