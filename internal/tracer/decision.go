package tracer

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/emberprof/ember/bpf"
	"github.com/emberprof/ember/export/atomicfile"
)

// Auto's choice of program variants is the same on every run on one kernel
// build, and deciding it costs most of a start: on a kernel that refuses
// bpf_task_work from sched_switch, the refused program and the probe of the
// next candidate are verified on every start (about 0.7 s of system time
// here, twice what loading the chosen programs costs). So the decision is
// kept in a small file between runs, keyed by the kernel's build (release,
// version string, a hash of its BTF), Ember's BPF object and the question
// asked (modes, requested method and unwinder). A run that finds it loads
// the decided candidate directly; if the kernel refuses it after all, the
// file is removed and auto decides the normal way.

// decision is auto's choice, as kept in the cache.
type decision struct {
	Key    string       `json:"key"`
	Method OffCPUMethod `json:"method"`
	Hook   bpf.Hook     `json:"hook"`
	Unwind UnwindMode   `json:"unwind"`
	// Said are the lines auto said when it decided (why the better
	// candidates were refused), said again on a run that uses the decision.
	Said []string `json:"said,omitempty"`
}

// decisions is the cache file of one question on this kernel build.
type decisions struct {
	key  string
	path string
}

// maxDecisionBytes bounds the file read back.
const maxDecisionBytes = 64 << 10

// CacheDirEnv names the environment variable that overrides the cache
// directory; "off" turns the cache off.
const CacheDirEnv = "EMBER_CACHE_DIR"

// SectionCacheDir is where the symbolizer keeps decompressed debug sections
// between runs (symbolize.SetSectionCacheDir), under the cache directory;
// "" when there is none.
func SectionCacheDir() string {
	if d := cacheDir(); d != "" {
		return filepath.Join(d, "sections")
	}
	return ""
}

// KernelCacheDir is where the symbolizer keeps the core kernel's text
// symbols, one table per boot (symbolize.SetKernelCacheDir), under the cache
// directory; "" when there is none.
func KernelCacheDir() string {
	if d := cacheDir(); d != "" {
		return filepath.Join(d, "kernel")
	}
	return ""
}

// cacheDir is where Ember keeps what it learned of this machine between
// runs: /var/cache/ember as root (never a directory from the environment
// of a user who ran sudo), else $XDG_CACHE_HOME/ember or ~/.cache/ember;
// "" when there is none.
func cacheDir() string {
	if d, ok := os.LookupEnv(CacheDirEnv); ok {
		if d == "off" {
			return ""
		}
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/cache/ember"
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "ember")
}

// openDecisions returns the cache of auto's decision for cfg on this kernel
// build, or nil when there is no cache or the build cannot be identified.
func openDecisions(cfg Config) *decisions {
	dir := cacheDir()
	if dir == "" {
		return nil
	}
	key, err := decisionKey(cfg)
	if err != nil {
		slog.Debug("auto's decision is not cached", "err", err)
		return nil
	}
	sum := sha256.Sum256([]byte(key))
	return &decisions{key: key, path: filepath.Join(dir, "auto-"+hex.EncodeToString(sum[:12])+".json")}
}

// decisionKey names the kernel build and the question.
func decisionKey(cfg Config) (string, error) {
	var parts []string
	for _, f := range []string{"/proc/sys/kernel/osrelease", "/proc/sys/kernel/version"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		parts = append(parts, strings.TrimSpace(string(b)))
	}
	btfFile := cmp.Or(cfg.KernelBTF, "/sys/kernel/btf/vmlinux")
	h, err := fileHash(btfFile)
	if err != nil {
		return "", err
	}
	obj := bpf.ObjectHash()
	parts = append(parts, "btf "+btfFile+" "+h, "object "+hex.EncodeToString(obj[:]),
		fmt.Sprintf("oncpu=%t offcpu=%t wakers=%t method=%q unwind=%q hot-in-storage=%t",
			cfg.OnCPU, cfg.OffCPU, cfg.Wakers, cfg.OffCPUMethod, cfg.Unwind, cfg.OffCPUHotInStorage))
	return strings.Join(parts, "\n"), nil
}

// fileHash identifies a file's contents: its size and CRC-32C (the
// kernel's BTF is 5 MiB; CRC-32C runs at memory speed where SHA-256 would
// add 8 ms to every start, and it only tells builds apart: the file's
// owner is checked, not its hash).
func fileHash(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d:%08x", n, h.Sum32()), nil
}

// get returns the cached decision, or nil. A file that is not this user's
// own regular file, is writable by others, or does not parse is ignored.
func (d *decisions) get() *decision {
	if d == nil {
		return nil
	}
	f, err := os.OpenFile(d.path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			slog.Debug("auto's cached decision ignored", "err", err)
		}
		return nil
	}
	defer f.Close()
	if err := ownedPrivately(f); err != nil {
		slog.Debug("auto's cached decision ignored", "file", d.path, "err", err)
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(f, maxDecisionBytes+1))
	if err != nil || len(b) > maxDecisionBytes {
		slog.Debug("auto's cached decision ignored", "file", d.path, "err", err, "bytes", len(b))
		return nil
	}
	var dec decision
	if err := json.Unmarshal(b, &dec); err != nil || dec.Key != d.key {
		slog.Debug("auto's cached decision ignored", "file", d.path, "err", err)
		return nil
	}
	return &dec
}

// ownedPrivately checks that f is a regular file of this user that no one
// else may write: a decision planted by another user could only make Ember
// pick a worse candidate, but nothing from such a file is taken.
func ownedPrivately(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("not a regular file")
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("owned by uid %d, not %d", st.Uid, os.Geteuid())
	case st.Mode&0o022 != 0:
		return fmt.Errorf("writable by others (mode %o)", st.Mode&0o777)
	}
	return nil
}

// put stores dec, atomically (a new file renamed over the old one);
// failures are only logged at debug: the cache saves time, nothing more.
func (d *decisions) put(dec decision) {
	if d == nil {
		return
	}
	dec.Key = d.key
	b, err := json.Marshal(dec)
	if err == nil {
		err = writePrivate(d.path, b)
	}
	if err != nil {
		slog.Debug("auto's decision not cached", "file", d.path, "err", err)
	}
}

// writePrivate writes b to path through a temporary file in the same
// directory, mode 0600, in a directory created 0700 if missing.
func writePrivate(path string, b []byte) error {
	return writePrivateFunc(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// writePrivateFunc is writePrivate with the contents written by write,
// through atomicfile, Ember's one way of writing a file whole.
func writePrivateFunc(path string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, 0o600, write)
}

// forget removes a decision the kernel no longer agrees with.
func (d *decisions) forget() {
	if d != nil {
		os.Remove(d.path)
	}
}

// cacheable reports whether refusals are the kernel's lasting answer
// (a program refused, a map type or kfunc missing), not a passing one
// such as a failed allocation, so that a decision built on them may be
// kept.
func cacheable(refusals []error) bool {
	for _, err := range refusals {
		var le *bpf.LoadError
		if !errors.As(err, &le) || (le.Program == "" && le.Map == "") ||
			errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return false
		}
	}
	return true
}
