package symbolize

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emberprof/ember/internal/testutil"
)

// A matrix entry: the file ember symbolizes, and the file llvm-symbolizer
// reads for the reference answer (the unstripped twin of a stripped binary).
type matrixBinary struct {
	name  string
	build func(tb testing.TB) (path, ref string)
}

func cBuild(cc string, flags ...string) func(tb testing.TB) (string, string) {
	return func(tb testing.TB) (string, string) {
		tool := requireTool(tb, cc)
		key := cc + strings.ReplaceAll(strings.Join(flags, ""), "=", "")
		p := built(tb, key, func(dir, out string) {
			run(tb, dir, tool, append(append([]string{}, flags...), "-o", out, srcPath(tb, "work.c"))...)
		})
		return p, p
	}
}

func cxxBuild(cxx string, flags ...string) func(tb testing.TB) (string, string) {
	return func(tb testing.TB) (string, string) {
		tool := requireTool(tb, cxx)
		key := "tmpl-" + cxx + strings.Join(flags, "")
		p := built(tb, key, func(dir, out string) {
			run(tb, dir, tool, append(append([]string{}, flags...), "-o", out, srcPath(tb, "templates.cpp"))...)
		})
		return p, p
	}
}

// zstdBuild compresses the debug sections with zstd after linking
// (objcopy --compress-debug-sections=zstd): gcc 12 has no -gz=zstd, and
// clang's -gz=zstd only compresses object files when linked with GNU ld.
func zstdBuild(tb testing.TB) (string, string) {
	cc := requireTool(tb, "clang-19")
	objcopy := requireTool(tb, "objcopy")
	p := built(tb, "clang-O2-zstd", func(dir, out string) {
		run(tb, dir, cc, "-O2", "-g", "-o", out+".tmp", srcPath(tb, "work.c"))
		run(tb, dir, objcopy, "--compress-debug-sections=zstd", out+".tmp", out)
	})
	requireCompressed(tb, p, "ZSTD")
	return p, p
}

func requireCompressed(tb testing.TB, path, kind string) {
	tb.Helper()
	out, err := exec.Command("readelf", "-t", path).Output()
	if err != nil {
		tb.Fatalf("readelf: %v", err)
	}
	if !strings.Contains(string(out), kind) {
		tb.Fatalf("%s: debug sections are not %s-compressed", path, kind)
	}
}

// debuglinkBuild splits the debug info into NAME.debug, strips the binary and
// links the two with .gnu_debuglink; ember reads the stripped one.
func debuglinkBuild(tb testing.TB) (string, string) {
	cc := requireTool(tb, "gcc")
	objcopy := requireTool(tb, "objcopy")
	p := built(tb, "gcc-O2-debuglink", func(dir, out string) {
		full := out + ".full"
		run(tb, dir, cc, "-O2", "-g", "-o", full, srcPath(tb, "work.c"))
		run(tb, dir, objcopy, "--only-keep-debug", full, out+".debug")
		run(tb, dir, objcopy, "--strip-all", "--add-gnu-debuglink="+out+".debug", full, out)
	})
	return p, p + ".full"
}

func sharedLibBuild(tb testing.TB) (string, string) {
	cc := requireTool(tb, "gcc")
	p := built(tb, "libwork.so", func(dir, out string) {
		run(tb, dir, cc, "-O2", "-g", "-shared", "-fPIC", "-o", out, srcPath(tb, "lib.c"))
	})
	return p, p
}

func rustBuild(mangling string) func(tb testing.TB) (string, string) {
	return func(tb testing.TB) (string, string) {
		rustc, err := exec.LookPath("rustc")
		if err != nil {
			if _, err2 := os.Stat("/root/.cargo/bin/rustc"); err2 == nil {
				rustc = "/root/.cargo/bin/rustc"
			} else {
				testutil.SkipOrFail(tb, "rustc is not installed (not in PATH nor /root/.cargo/bin; make deps installs it)")
			}
		}
		p := built(tb, "rust-"+mangling, func(dir, out string) {
			args := []string{"-O", "-g", "-o", out, srcPath(tb, "rustwork/main.rs")}
			if mangling != "legacy" { // legacy is the default; naming it needs -Z unstable-options
				args = append(args, "-C", "symbol-mangling-version="+mangling)
			}
			run(tb, dir, rustc, args...)
		})
		return p, p
	}
}

func goBuild(stripped bool, extra ...string) func(tb testing.TB) (string, string) {
	return func(tb testing.TB) (string, string) {
		gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, err := os.Stat(gobin); err != nil {
			gobin = requireTool(tb, "go")
		}
		build := func(key string, flags ...string) string {
			return built(tb, key, func(dir, out string) {
				args := append([]string{"build", "-trimpath=false"}, flags...)
				args = append(args, "-o", out, srcPath(tb, "gowork/main.go"))
				cmd := exec.Command(gobin, args...)
				cmd.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
				if out, err := cmd.CombinedOutput(); err != nil {
					tb.Fatalf("go build: %v\n%s", err, out)
				}
			})
		}
		suffix := strings.Join(extra, "")
		full := build("go-full"+suffix, extra...)
		if !stripped {
			return full, full
		}
		return build("go-stripped"+suffix, append(extra, "-ldflags=-s -w")...), full
	}
}

var matrix = []matrixBinary{
	{"gcc -O0 DWARF4", cBuild("gcc", "-O0", "-gdwarf-4")},
	{"gcc -O2 DWARF4", cBuild("gcc", "-O2", "-gdwarf-4")},
	{"gcc -O2 DWARF5", cBuild("gcc", "-O2", "-gdwarf-5")},
	{"clang-19 -O0 DWARF5", cBuild("clang-19", "-O0", "-gdwarf-5")},
	{"clang-19 -O2 DWARF4", cBuild("clang-19", "-O2", "-gdwarf-4")},
	{"clang-19 -O2 DWARF5", cBuild("clang-19", "-O2", "-gdwarf-5")},
	{"gcc -O2 zlib", func(tb testing.TB) (string, string) {
		p, r := cBuild("gcc", "-O2", "-g", "-gz=zlib")(tb)
		requireCompressed(tb, p, "ZLIB")
		return p, r
	}},
	{"clang-19 -O2 zstd", zstdBuild},
	{"gcc -O2 no-PIE", cBuild("gcc", "-O2", "-g", "-no-pie")},
	{"gcc -O2 static", cBuild("gcc", "-O2", "-g", "-static")},
	{"gcc -O2 stripped+debuglink", debuglinkBuild},
	{"gcc -O2 shared library", sharedLibBuild},
	{"g++ -O0 templates", cxxBuild("g++", "-O0", "-g")},
	{"g++ -O2 templates", cxxBuild("g++", "-O2", "-g")},
	{"clang++-19 -O2 templates", cxxBuild("clang++-19", "-O2", "-g")},
	{"rustc -O legacy mangling", rustBuild("legacy")},
	{"rustc -O v0 mangling", rustBuild("v0")},
	{"go", goBuild(false)},
	{"go -ldflags=-s -w", goBuild(true)},
	{"go -buildmode=pie -ldflags=-s -w", goBuild(true, "-buildmode=pie")},
}

const matrixSamples = 3000

// TestMatrixAgainstLLVM symbolizes addresses sampled across the text of each
// binary with ember and with llvm-symbolizer-19 and requires 99% agreement.
//
// Comparison rule: an address agrees when both give the same number of
// frames and, frame by frame (innermost first), the same function, the same
// file and the same line. Functions are compared as the binary names them,
// before demangling (llvm-symbolizer --no-demangle against RawFrames), so
// that the test measures the symbolizer rather than the two demanglers;
// agreement of the demangled names is printed too. "??" equals "". Files are
// compared as full paths after filepath.Clean. Columns are printed, not
// required (Go has none). For Go, the pclntab names assembly functions
// without the ".abi0" suffix the symbol table gives them.
func TestMatrixAgainstLLVM(t *testing.T) {
	requireTool(t, "llvm-symbolizer-19")
	for _, mb := range matrix {
		t.Run(strings.ReplaceAll(mb.name, " ", "_"), func(t *testing.T) {
			path, ref := mb.build(t)
			addrs := textAddresses(t, ref, matrixSamples)
			want := llvmFrames(t, ref, addrs, "--no-demangle")
			wantDem := llvmFrames(t, ref, addrs)
			o, err := OpenObject(path)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			agree, colAgree, demAgree, inlined := 0, 0, 0, 0
			var shown, shownDem int
			for i, a := range addrs {
				got, err := o.RawFrames(a)
				if err != nil && shown < 3 {
					t.Logf("%#x: %v", a, err)
				}
				ok, colOK := sameFrames(got, want[i], false)
				if ok {
					agree++
				} else if shown < 5 {
					shown++
					t.Logf("%#x differs:\n  ember: %+v\n  llvm:  %+v", a, got, want[i])
				}
				if colOK {
					colAgree++
				}
				if len(want[i]) > 1 {
					inlined++
				}
				dem, _ := o.Frames(a)
				if ok, _ := sameFrames(dem, wantDem[i], true); ok {
					demAgree++
				} else if shownDem < 2 && testing.Verbose() {
					shownDem++
					t.Logf("%#x demangles differently:\n  ember: %+v\n  llvm:  %+v", a, dem, wantDem[i])
				}
			}
			n := float64(len(addrs))
			pct := 100 * float64(agree) / n
			t.Logf("AGREEMENT %-28s %6.2f%% of %d addresses (%d with inlined frames); columns %.2f%%; demangled names %.2f%%; debug file %q",
				mb.name, pct, len(addrs), inlined, 100*float64(colAgree)/n, 100*float64(demAgree)/n, o.DebugFile())
			if pct < 99 {
				t.Errorf("%s: ember agrees with llvm-symbolizer-19 on %.2f%% of addresses, want >= 99%%", mb.name, pct)
			}
		})
	}
}

func sameFrames(got, want []Frame, demangled bool) (ok, columns bool) {
	if len(got) != len(want) {
		return false, false
	}
	ok, columns = true, true
	for i := range got {
		g, w := got[i], want[i]
		if !sameFunction(g.Function, w.Function, demangled) || cleanPath(g.File) != cleanPath(w.File) || g.Line != w.Line {
			ok = false
		}
		if g.Column != w.Column {
			columns = false
		}
	}
	return ok, columns && ok
}

// sameFunction compares function names. Demangled names are compared
// ignoring spaces, which the two demanglers place differently
// ("operator< <int>" and "operator<<int>"), after demangling the names
// llvm-symbolizer leaves mangled.
func sameFunction(ember, llvm string, demangled bool) bool {
	llvm = strings.TrimSuffix(llvm, ".abi0")
	if !demangled {
		return ember == llvm
	}
	strip := func(s string) string { return strings.ReplaceAll(s, " ", "") }
	return strip(ember) == strip(demangleName(llvm))
}

func cleanPath(p string) string {
	if p == "" {
		return ""
	}
	return filepath.Clean(p)
}
