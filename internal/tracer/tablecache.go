package tracer

import (
	"bufio"
	"cmp"
	"debug/elf"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/symbolize/objfile"
	"github.com/emberprof/ember/unwind"
)

// Unwind tables on disk, by build ID, between runs. Building a table is
// most of what a whole-system recording costs after loading the programs
// (decoding .eh_frame or .gopclntab of every library a sampled process maps:
// 0.6 s of CPU for 82 tables in a 10 s recording here, libLLVM's alone over
// 0.2 s), and the same binaries are met run after run. A table read back is
// the table built: the file holds its rows and counts, keyed by the binary's
// GNU build ID and by this Ember executable's own build ID, so that a newer
// Ember (whose builder may differ) never reads an older one's tables.
// Binaries without a build ID are not kept (a device and inode can be
// reused by another file). Files are read only when they are this user's own
// and no one else may write them; a file that does not decode is rebuilt.

// maxTableFileBytes bounds a table file read back (libclang-cpp's table,
// the largest met, is 2.6M rows of 19 bytes).
const maxTableFileBytes = 128 << 20

// maxTableDirBytes bounds the directory: past it, the oldest files go.
const maxTableDirBytes = 512 << 20

// tableFileMagic starts every table file (the format's version is in it).
const tableFileMagic = "ember-unwind-table-1\n"

// rowBytes is the size of one row on disk.
const rowBytes = 8 + 3 + 4 + 2 + 2

// tableFile is what a file holds besides the rows.
type tableFile struct {
	Arch   unwind.Arch
	Stats  unwind.Stats
	Go     *unwind.GoStats
	Errors []string
}

// tableDir is the directory of this Ember's table files, "" when there is
// no cache directory or Ember's own build cannot be identified.
var tableDir = sync.OnceValue(func() string {
	dir := cacheDir()
	if dir == "" {
		return ""
	}
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	id, err := goBuildID(self)
	if err != nil || id == "" {
		slog.Debug("unwind tables are not kept on disk", "err", err)
		return ""
	}
	return filepath.Join(dir, "unwind", id)
})

// goBuildID reads the Go build ID of an executable, through the one reader
// of build IDs, as a path component.
func goBuildID(name string) (string, error) {
	ef, err := elf.Open(name)
	if err != nil {
		return "", err
	}
	defer ef.Close()
	_, id := objfile.BuildIDs(ef)
	if id == "" {
		return "", errors.New("no Go build ID")
	}
	// A path component: the ID's own characters are base64url and '/'.
	return strings.ReplaceAll(id, "/", "_"), nil
}

// buildTableCached returns the table of ef, read from disk when a run
// before this one built it, else built and written for the next run.
func buildTableCached(key string, ef *elf.File) (*unwind.Table, error) {
	return buildTableIn(tableDir(), key, ef)
}

// buildTableIn is buildTableCached with the directory given.
func buildTableIn(dir, key string, ef *elf.File) (*unwind.Table, error) {
	id, ok := strings.CutPrefix(key, objfile.BuildIDKey(""))
	if dir == "" || !ok || strings.ContainsAny(id, "/.") {
		return unwind.NewTable(ef)
	}
	path := filepath.Join(dir, id)
	if t, err := readTableFile(path); err == nil {
		now := time.Now() // the oldest files are trimmed first
		_ = os.Chtimes(path, now, now)
		return t, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		slog.Debug("unwind table on disk ignored", "file", path, "err", err)
	}
	t, err := unwind.NewTable(ef)
	if err != nil {
		return nil, err
	}
	if err := writeTableFile(path, t); err != nil {
		slog.Debug("unwind table not kept on disk", "file", path, "err", err)
	}
	return t, nil
}

// readTableFile reads a table written by writeTableFile, streaming: the
// rows are the only copy held (a large library's file is tens of MiB).
func readTableFile(path string) (*unwind.Table, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := ownedPrivately(f); err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(io.LimitReader(f, maxTableFileBytes), 1<<16)
	head := make([]byte, len(tableFileMagic)+8)
	if _, err := io.ReadFull(r, head); err != nil || string(head[:len(tableFileMagic)]) != tableFileMagic {
		return nil, errors.New("not a table file of this format")
	}
	n := binary.LittleEndian.Uint64(head[len(tableFileMagic):])
	if n == 0 || n > maxTableFileBytes/rowBytes {
		return nil, fmt.Errorf("%d rows", n)
	}
	rows := make([]unwind.Row, n)
	var b [rowBytes]byte
	for i := range rows {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		rows[i] = unwind.Row{
			PC:        binary.LittleEndian.Uint64(b[0:]),
			CFA:       unwind.CFAKind(b[8]),
			FP:        unwind.FPRule(b[9]),
			RA:        unwind.RARule(b[10]),
			CFAOffset: int32(binary.LittleEndian.Uint32(b[11:])),
			FPOffset:  int16(binary.LittleEndian.Uint16(b[15:])),
			RAOffset:  int16(binary.LittleEndian.Uint16(b[17:])),
		}
		if i > 0 && rows[i].PC < rows[i-1].PC {
			return nil, errors.New("rows out of order")
		}
	}
	var tf tableFile
	if err := gob.NewDecoder(r).Decode(&tf); err != nil {
		return nil, fmt.Errorf("counts: %w", err)
	}
	t := &unwind.Table{Arch: tf.Arch, Rows: rows, Stats: tf.Stats, Go: tf.Go}
	for _, e := range tf.Errors {
		t.Errors = append(t.Errors, errors.New(e))
	}
	return t, nil
}

// writeTableFile writes t for later runs, making room in the directory
// first.
func writeTableFile(path string, t *unwind.Table) error {
	size := int64(len(tableFileMagic) + 8 + len(t.Rows)*rowBytes)
	if size > maxTableFileBytes-4096 {
		return fmt.Errorf("%d rows: over %d bytes", len(t.Rows), maxTableFileBytes)
	}
	trimTableDirs(filepath.Dir(filepath.Dir(path)), maxTableDirBytes-size)
	return writePrivateFunc(path, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<16)
		bw.WriteString(tableFileMagic)
		bw.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(t.Rows))))
		var r [rowBytes]byte
		for _, row := range t.Rows {
			binary.LittleEndian.PutUint64(r[0:], row.PC)
			r[8], r[9], r[10] = byte(row.CFA), byte(row.FP), byte(row.RA)
			binary.LittleEndian.PutUint32(r[11:], uint32(row.CFAOffset))
			binary.LittleEndian.PutUint16(r[15:], uint16(row.FPOffset))
			binary.LittleEndian.PutUint16(r[17:], uint16(row.RAOffset))
			bw.Write(r[:])
		}
		tf := tableFile{Arch: t.Arch, Stats: t.Stats, Go: t.Go}
		for _, e := range t.Errors {
			tf.Errors = append(tf.Errors, e.Error())
		}
		if err := gob.NewEncoder(bw).Encode(&tf); err != nil {
			return err
		}
		return bw.Flush()
	})
}

// trimTableDirs removes the oldest table files under root (every Ember
// build's) until they take at most budget bytes.
func trimTableDirs(root string, budget int64) {
	type file struct {
		path  string
		size  int64
		mtime int64
	}
	var files []file
	var total int64
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			files = append(files, file{p, info.Size(), info.ModTime().UnixNano()})
			total += info.Size()
		}
		return nil
	})
	if total <= budget {
		return
	}
	slices.SortFunc(files, func(a, b file) int { return cmp.Compare(a.mtime, b.mtime) })
	for _, f := range files {
		if total <= budget {
			break
		}
		if os.Remove(f.path) == nil {
			total -= f.size
		}
	}
}
