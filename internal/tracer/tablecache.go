package tracer

import (
	"bufio"
	"debug/elf"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/export/cachedir"
	"github.com/emberprof/ember/symbolize/objfile"
	"github.com/emberprof/ember/unwind"
)

// Unwind tables on disk, by build ID, between runs. Building a table is
// most of what a whole-system recording costs after loading the programs
// (decoding .eh_frame or .gopclntab of every library a sampled process maps:
// 0.6 s of CPU for 82 tables in a 10 s recording here, libLLVM's alone over
// 0.2 s), and the same binaries are met run after run. A table read back is
// the table built, in the map form the tracer keeps (unwind.Table.Compact:
// 4 bytes a row, written into the maps as read), keyed by the binary's GNU
// build ID and by the table version (unwind.TableVersion), so that every
// Ember build whose builder makes the same tables shares them (keyed by
// Ember's own build ID, each new binary rebuilt every table once, at up to
// 27-136 MB of heap while building one). Binaries without a build ID are
// not kept (a device and inode can be reused by another file). Files are
// read only when they are this user's own and no one else may write them;
// a file that does not decode is rebuilt.

// maxTableFileBytes bounds a table file read back (libclang-cpp's table,
// the largest met, is 2.6M rows: 11 MB in map form).
const maxTableFileBytes = 128 << 20

// maxTableDirBytes bounds the directory: past it, the oldest files go.
const maxTableDirBytes = 512 << 20

// tableFileMagic starts every table file; the table version follows it.
// A change to this file's own layout changes the magic.
const tableFileMagic = "ember-unwind-map-1\n"

// tableVersion is the version of the tables kept: unwind.TableVersion (a
// variable for the test that a new version reads none of the old files).
var tableVersion uint32 = unwind.TableVersion

// tableHeader follows the magic: the version, then the map form's
// architecture, base and array lengths in bytes.
type tableHeader struct {
	Version, Arch         uint32
	Base                  uint64
	NRows, NRules, NPages uint64
}

// tableFile is what a file holds besides the map form.
type tableFile struct {
	Stats  unwind.Stats
	Go     *unwind.GoStats
	Errors []string
}

// tableDir is the directory of table files of this table version, "" when
// there is no cache directory.
var tableDir = sync.OnceValue(func() string { return tableDirIn(cacheDir()) })

// tableDirIn is the directory of the current version's table files under
// the cache directory dir ("" for none).
func tableDirIn(dir string) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, "unwind", fmt.Sprintf("v%d", tableVersion))
}

// buildTableCached returns the table of ef in map form (compacted), read
// from disk when a run before this one built it, else built and written for
// the next run.
func buildTableCached(key string, ef *elf.File) (*unwind.Table, error) {
	return buildTableIn(tableDir(), key, ef)
}

// buildTableIn is buildTableCached with the directory given.
func buildTableIn(dir, key string, ef *elf.File) (*unwind.Table, error) {
	id, ok := strings.CutPrefix(key, objfile.BuildIDKey(""))
	if dir == "" || !ok || strings.ContainsAny(id, "/.") {
		return newCompactTable(ef)
	}
	path := filepath.Join(dir, id)
	if t, err := readTableFile(path); err == nil {
		now := time.Now() // the oldest files are trimmed first
		_ = os.Chtimes(path, now, now)
		return t, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		slog.Debug("unwind table on disk ignored", "file", path, "err", err)
	}
	t, err := newCompactTable(ef)
	if err != nil {
		return nil, err
	}
	if err := writeTableFile(path, t); err != nil {
		slog.Debug("unwind table not kept on disk", "file", path, "err", err)
	}
	return t, nil
}

// newCompactTable builds the table of ef and keeps its map form only.
func newCompactTable(ef *elf.File) (*unwind.Table, error) {
	t, err := unwind.NewTable(ef)
	if err != nil {
		return nil, err
	}
	if err := t.Compact(); err != nil {
		return nil, err
	}
	return t, nil
}

// readTableFile reads a table written by writeTableFile: its arrays are
// read straight into the map form, the only copy held.
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
	magic := make([]byte, len(tableFileMagic))
	var h tableHeader
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != tableFileMagic {
		return nil, errors.New("not a table file of this format")
	}
	if err := binary.Read(r, binary.LittleEndian, &h); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if h.Version != tableVersion {
		return nil, fmt.Errorf("table version %d, want %d", h.Version, tableVersion)
	}
	if h.NRows > maxTableFileBytes || h.NRules > maxTableFileBytes || h.NPages > maxTableFileBytes ||
		h.NRows+h.NRules+h.NPages > maxTableFileBytes {
		return nil, fmt.Errorf("arrays of %d, %d, %d bytes", h.NRows, h.NRules, h.NPages)
	}
	e := &unwind.Encoded{Arch: unwind.Arch(h.Arch), Base: h.Base,
		Rows: make([]byte, h.NRows), Rules: make([]byte, h.NRules), Pages: make([]byte, h.NPages)}
	for _, b := range [][]byte{e.Rows, e.Rules, e.Pages} {
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("map form: %w", err)
		}
	}
	var tf tableFile
	if err := gob.NewDecoder(r).Decode(&tf); err != nil {
		return nil, fmt.Errorf("counts: %w", err)
	}
	var errs []error
	for _, e := range tf.Errors {
		errs = append(errs, errors.New(e))
	}
	return unwind.Compacted(e, tf.Stats, tf.Go, errs)
}

// writeTableFile writes t's map form for later runs, making room in the
// directory first.
func writeTableFile(path string, t *unwind.Table) error {
	e, err := t.Encoded()
	if err != nil {
		return err
	}
	size := int64(len(tableFileMagic) + binary.Size(tableHeader{}) + len(e.Rows) + len(e.Rules) + len(e.Pages))
	if size > maxTableFileBytes-4096 {
		return fmt.Errorf("%d bytes in map form: over %d", size, maxTableFileBytes)
	}
	// Every table version's files, and those of Embers that kept them by
	// their own build ID.
	cachedir.Trim(filepath.Dir(filepath.Dir(path)), maxTableDirBytes-size, nil, "")
	return writePrivateFunc(path, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<16)
		bw.WriteString(tableFileMagic)
		h := tableHeader{Version: tableVersion, Arch: uint32(e.Arch), Base: e.Base,
			NRows: uint64(len(e.Rows)), NRules: uint64(len(e.Rules)), NPages: uint64(len(e.Pages))}
		if err := binary.Write(bw, binary.LittleEndian, &h); err != nil {
			return err
		}
		for _, b := range [][]byte{e.Rows, e.Rules, e.Pages} {
			bw.Write(b)
		}
		tf := tableFile{Stats: t.Stats, Go: t.Go}
		for _, e := range t.Errors {
			tf.Errors = append(tf.Errors, e.Error())
		}
		if err := gob.NewEncoder(bw).Encode(&tf); err != nil {
			return err
		}
		return bw.Flush()
	})
}
