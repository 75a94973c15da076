package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestFold(t *testing.T) {
	stacks, err := fold(strings.NewReader(perfScript))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := writeFolded(&b, stacks); err != nil {
		t.Fatal(err)
	}
	want := "cpusplit;__libc_start_call_main;run;work_b;spin 1\n" +
		"cpusplit;start_thread;run;work_a;spin 2\n" +
		"my comm;[thing];[kernel.kallsyms] 1\n"
	if b.String() != want {
		t.Errorf("folded:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestFoldLongLine(t *testing.T) {
	in := "x 1 1.0: 1 cpu-clock:\n\t 1 " + strings.Repeat("a", maxLine+1) + " (/bin/x)\n"
	if _, err := fold(strings.NewReader(in)); err == nil {
		t.Error("a line over the cap folded without error")
	}
}
