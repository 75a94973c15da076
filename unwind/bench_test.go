package unwind

import (
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"
)

// Benchmarks. Run them with
//
//	go test -run '^$' -bench . -benchtime 3x ./unwind
//
// Each prints ratios against a baseline measured in the same run: table
// build against readelf interpreting the same frames, table bytes against
// .eh_frame bytes, a table walk against a frame-pointer walk.

type candidate struct {
	path    string
	ehFrame uint64
}

// largestBinaries returns the n ELF files of this machine's usual binary
// directories with the largest .eh_frame, largest first.
func largestBinaries(tb testing.TB, n int) []candidate {
	tb.Helper()
	dirs := []string{"/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec", "/usr/local/go/pkg/tool", "/usr/local/bin"}
	if lib, err := filepath.Glob("/usr/lib/*-linux-gnu"); err == nil {
		dirs = append(dirs, lib...)
	}
	if llvm, err := filepath.Glob("/usr/lib/llvm-*/bin"); err == nil {
		dirs = append(dirs, llvm...)
	}
	seen := map[string]bool{}
	var cands []candidate
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			path := filepath.Join(dir, e.Name())
			fi, err := os.Stat(path) // follows symlinks
			if err != nil || !fi.Mode().IsRegular() || fi.Size() < 1<<20 {
				continue
			}
			real, err := filepath.EvalSymlinks(path)
			if err != nil || seen[real] {
				continue
			}
			seen[real] = true
			f, err := elf.Open(real)
			if err != nil {
				continue
			}
			if s := f.Section(".eh_frame"); s != nil && s.Type != elf.SHT_NOBITS && !IsGo(f) {
				cands = append(cands, candidate{real, s.Size})
			}
			f.Close()
		}
	}
	slices.SortFunc(cands, func(a, b candidate) int { return int(int64(b.ehFrame) - int64(a.ehFrame)) })
	if len(cands) == 0 {
		tb.Fatal("no ELF binary with .eh_frame found")
	}
	return cands[:min(n, len(cands))]
}

func BenchmarkBuildTable(b *testing.B) {
	targets := map[string]string{"libc.so.6": libcPath(b)}
	largest := largestBinaries(b, 1)[0]
	targets["largest"] = largest.path
	for _, name := range []string{"libc.so.6", "largest"} {
		path := targets[name]
		b.Run(name, func(b *testing.B) {
			f, err := elf.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			eh := f.Section(".eh_frame").Size
			var tab *Table
			b.ResetTimer()
			for b.Loop() {
				if tab, err = NewTable(f); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			perBuild := b.Elapsed().Seconds() / float64(b.N)

			// Baseline in the same run: readelf interpreting the same frames.
			start := time.Now()
			cmd := exec.Command("readelf", "--debug-dump=frames-interp", path)
			cmd.Stdout, cmd.Stderr = nil, nil
			cmd.Run() // exits 1 on some NOBITS debug links; the work is done
			readelfSecs := time.Since(start).Seconds()

			enc, err := tab.Encode()
			if err != nil {
				b.Fatal(err)
			}
			rows, bytes := enc.NumRows(), enc.Size()
			b.ReportMetric(float64(rows), "rows")
			b.ReportMetric(float64(bytes), "table-bytes")
			b.ReportMetric(float64(eh), "eh_frame-bytes")
			b.ReportMetric(float64(bytes)/float64(eh), "table/eh_frame")
			b.ReportMetric(perBuild/readelfSecs, "build/readelf-time")
			b.ReportMetric(float64(tab.Stats.FDEs), "fdes")
			b.Logf("%s (%s): %d FDEs -> %d rows (%d before merging, %d with page starts), %d rules, %d pages: %d bytes = %.2fx .eh_frame (%d bytes); build %.1f ms, readelf %.1f ms (%.2fx)",
				name, path, tab.Stats.FDEs, len(tab.Rows), tab.Stats.RawRows, rows, enc.NumRules(), enc.NumPages(), bytes, float64(bytes)/float64(eh), eh,
				perBuild*1e3, readelfSecs*1e3, perBuild/readelfSecs)
		})
	}
}

// BenchmarkUnwind walks a real stack, captured once from the stopped chain
// workload, with tables and with frame pointers only, in memory (no
// syscalls), and reports the cost per frame of each.
func BenchmarkUnwind(b *testing.B) {
	if runtime.GOARCH != "amd64" {
		b.Skip("x86-64 ptrace registers")
	}
	path := buildBinary(b, "chain-O1-fp")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := startStopped(b, path, "spin")
	regs := regsOf(&p.regs)
	// Snapshot the stack so both walks read the same memory from a map.
	stack := fakeStack{}
	for a := regs.SP &^ 7; a < regs.SP+64<<10; a += 8 {
		w, err := p.readMem(a, 8)
		if err != nil {
			break
		}
		stack[a] = binary.LittleEndian.Uint64(w)
	}
	var tablePerFrame, fpPerFrame float64
	b.Run("tables", func(b *testing.B) {
		var n int
		for b.Loop() {
			pcs, _ := Unwind(regs, stack.read, &p.maps, uint32(p.pid))
			n = len(pcs)
		}
		tablePerFrame = float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(n)
		b.ReportMetric(float64(n), "frames")
		b.ReportMetric(tablePerFrame, "ns/frame")
	})
	b.Run("frame-pointers", func(b *testing.B) {
		var n int
		empty := &Maps{}
		for b.Loop() {
			pcs, _ := Unwind(regs, stack.read, empty, uint32(p.pid))
			n = len(pcs)
		}
		fpPerFrame = float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(n)
		b.ReportMetric(float64(n), "frames")
		b.ReportMetric(fpPerFrame, "ns/frame")
		if tablePerFrame > 0 {
			b.ReportMetric(tablePerFrame/fpPerFrame, "tables/fp-per-frame")
		}
	})
}
