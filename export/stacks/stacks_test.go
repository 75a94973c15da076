package stacks

import (
	"errors"
	"strings"
	"testing"

	"github.com/emberprof/ember/export/internal/synth"
	"github.com/google/pprof/profile"
)

func names(s *Set, st Stack) string {
	var parts []string
	for _, id := range st.Frames {
		f := s.Frames[id]
		parts = append(parts, f.Name+"/"+f.Kind.String())
	}
	return strings.Join(parts, ";")
}

func TestFromProfileOrderAndKinds(t *testing.T) {
	s, err := FromProfile(synth.Known(), Options{ProcessRoot: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		stack string
		lines []int64
		count int64
	}{
		{"app/process;main/user;run/user;compute/user;helper/user", []int64{0, 30, 20, 12, 7}, 5},
		{"app/process;main/user;run/user;compute/user", []int64{0, 30, 20, 14}, 3},
		{"app/process;main/user;run/user;read/user;entry_SYSCALL_64/kernel;ksys_read/kernel;vfs_read/kernel", []int64{0, 30, 20, 26, 0, 620, 470}, 2},
		{"app/process;main/user;libstripped.so+0x1234/user", []int64{0, 30, 0}, 1},
		{"other/process;main/user;run/user;compute/user;helper/user", []int64{0, 30, 20, 12, 7}, 4},
	}
	if len(s.Stacks) != len(want) {
		t.Fatalf("%d stacks, want %d", len(s.Stacks), len(want))
	}
	for i, w := range want {
		st := s.Stacks[i]
		if got := names(s, st); got != w.stack {
			t.Errorf("stack %d = %s, want %s", i, got, w.stack)
		}
		if got := st.Values[0]; got != w.count {
			t.Errorf("stack %d count = %d, want %d", i, got, w.count)
		}
		if len(st.Lines) != len(w.lines) {
			t.Errorf("stack %d lines %v, want %v", i, st.Lines, w.lines)
			continue
		}
		for j := range w.lines {
			if st.Lines[j] != w.lines[j] {
				t.Errorf("stack %d lines %v, want %v", i, st.Lines, w.lines)
				break
			}
		}
	}
	if got := s.Total(1); got != 15*synth.Period {
		t.Errorf("cpu total %d, want %d", got, 15*synth.Period)
	}
}

func TestSamplesMerged(t *testing.T) {
	p := synth.Known()
	p.Sample = append(p.Sample, p.Sample[0], p.Sample[0])
	s, err := FromProfile(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Without process roots, "app" and "other" stacks merge too.
	if len(s.Stacks) != 4 {
		t.Fatalf("%d stacks, want 4", len(s.Stacks))
	}
	if got := s.Stacks[0].Values[0]; got != 5+4+5+5 {
		t.Errorf("merged count %d, want 19", got)
	}
}

func TestIndex(t *testing.T) {
	s, err := FromProfile(synth.Wall(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"": 2, "cpu": 0, "offcpu/nanoseconds": 1, "wall": 2, "1": 1} {
		got, err := s.Index(name)
		if err != nil || got != want {
			t.Errorf("Index(%q) = %d, %v; want %d", name, got, err, want)
		}
	}
	for _, name := range []string{"alloc", "3", "-1", "cpu/count"} {
		if _, err := s.Index(name); !errors.Is(err, ErrSampleType) {
			t.Errorf("Index(%q) err = %v, want ErrSampleType", name, err)
		}
	}
	p := synth.Wall()
	p.DefaultSampleType = "offcpu"
	if i, _ := SampleIndex(p, ""); i != 1 {
		t.Errorf("default with DefaultSampleType offcpu = %d, want 1", i)
	}
}

func TestKernelDetection(t *testing.T) {
	for file, want := range map[string]bool{
		"[kernel.kallsyms]": true, "[kernel.kallsyms]_text": true, "/boot/vmlinux": true, "[vmlinux]": true,
		"/lib/modules/6.18/kernel/fs/ext4/ext4.ko": true, "ext4.ko.zst": true,
		"/usr/bin/app": false, "[vdso]": false, "": false,
	} {
		if got := IsKernelFile(file); got != want {
			t.Errorf("IsKernelFile(%q) = %v", file, got)
		}
	}
	// Without a mapping, an upper-half address is the kernel's.
	k := locationKind(&profile.Location{Address: 0xffffffff81000000})
	u := locationKind(&profile.Location{Address: 0x401000})
	if k != Kernel || u != User {
		t.Errorf("unmapped kinds = %v, %v", k, u)
	}
}

func TestMalformed(t *testing.T) {
	if _, err := FromProfile(&profile.Profile{}, Options{}); !errors.Is(err, ErrEmpty) {
		t.Errorf("no sample types: %v", err)
	}
	p := synth.Known()
	p.Sample[0].Location[1] = nil
	if _, err := FromProfile(p, Options{}); err == nil {
		t.Errorf("nil location: no error")
	}
	p = synth.Known()
	p.Sample[0].Value = []int64{1}
	if _, err := FromProfile(p, Options{}); err == nil {
		t.Errorf("short values: no error")
	}
}
