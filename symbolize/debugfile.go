package symbolize

import (
	"bytes"
	"debug/elf"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/ulikunitz/xz"
)

const defaultDebugDir = "/usr/lib/debug"

// findDebugFile looks for the separate debug file of the object ef: by build
// ID under each debug directory (.build-id/xx/yyyy.debug), then by
// .gnu_debuglink beside the binary, in its .debug directory, and under each
// debug directory, with the link's CRC checked. It returns the indexed debug
// file or nil.
func findDebugFile(ef *elf.File, data []byte, name, buildID string, debugDirs []string) (*Object, string) {
	var cands []string
	if len(buildID) > 2 {
		for _, d := range debugDirs {
			cands = append(cands, filepath.Join(d, ".build-id", buildID[:2], buildID[2:]+".debug"))
		}
	}
	for _, c := range cands {
		if o := openDebugFile(c, buildID, 0, false); o != nil {
			return o, c
		}
	}
	link, crc, ok := debugLink(ef, data)
	if !ok {
		return nil, ""
	}
	dir := filepath.Dir(name)
	cands = []string{filepath.Join(dir, link), filepath.Join(dir, ".debug", link)}
	for _, d := range debugDirs {
		cands = append(cands, filepath.Join(d, dir, link))
	}
	self, _ := os.Stat(name)
	for _, c := range cands {
		if st, err := os.Stat(c); err != nil || (self != nil && os.SameFile(st, self)) {
			continue
		}
		if o := openDebugFile(c, buildID, crc, true); o != nil {
			return o, c
		}
	}
	return nil, ""
}

// debugLink reads .gnu_debuglink: a NUL-terminated file name, padding to 4
// bytes, and the CRC-32 of the debug file.
func debugLink(ef *elf.File, data []byte) (string, uint32, bool) {
	b, err := sectionData(ef, data, ".gnu_debuglink")
	if err != nil || len(b) < 6 {
		return "", 0, false
	}
	i := bytes.IndexByte(b, 0)
	if i <= 0 || i > 4096 {
		return "", 0, false
	}
	off := (i + 4) &^ 3
	if off+4 > len(b) {
		return "", 0, false
	}
	name := string(b[:i])
	if filepath.Base(name) != name {
		return "", 0, false // a link names a file, not a path
	}
	return name, ef.ByteOrder.Uint32(b[off:]), true
}

func openDebugFile(path, buildID string, crc uint32, checkCRC bool) *Object {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if checkCRC {
		h := crc32.NewIEEE()
		if _, err := io.Copy(h, f); err != nil || h.Sum32() != crc {
			return nil
		}
	}
	data, err := mapFile(f)
	if err != nil {
		return nil
	}
	o, err := parseObject(data, path, nil, false, nil)
	if err != nil || (buildID != "" && o.buildID != "" && o.buildID != buildID) {
		unmap(data)
		return nil
	}
	o.mapped = append(o.mapped, data)
	return o
}

// miniDebugInfo reads the symbol table of the xz-compressed ELF image in
// .gnu_debugdata (MiniDebugInfo, as Fedora ships). (nil, nil) if there is none.
func miniDebugInfo(ef *elf.File, name string) (t *symtab, err error) {
	s := ef.Section(".gnu_debugdata")
	if s == nil || s.Type == elf.SHT_NOBITS {
		return nil, nil
	}
	defer guard(name+": .gnu_debugdata", &err)
	zr, err := xz.NewReader(io.LimitReader(s.Open(), maxDebugdata))
	if err != nil {
		return nil, fmt.Errorf("%s: .gnu_debugdata: %w: %w", name, ErrFormat, err)
	}
	img, err := io.ReadAll(io.LimitReader(zr, maxDebugdata+1))
	if err != nil {
		return nil, fmt.Errorf("%s: .gnu_debugdata: %w: %w", name, ErrFormat, err)
	}
	if len(img) > maxDebugdata {
		return nil, fmt.Errorf("%s: .gnu_debugdata: %w", name, ErrTooLarge)
	}
	if err := checkELFExtents(img); err != nil {
		return nil, fmt.Errorf("%s: .gnu_debugdata: %w", name, err)
	}
	mf, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		return nil, fmt.Errorf("%s: .gnu_debugdata: %w: %w", name, ErrFormat, err)
	}
	t, _, err = newSymtab(mf, img)
	if err != nil {
		return nil, fmt.Errorf("%s: .gnu_debugdata: %w", name, err)
	}
	return t, nil
}
