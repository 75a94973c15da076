package main

import (
	"errors"
	"testing"
	"time"
)

func TestParseCPUWork(t *testing.T) {
	w, err := parseCPUWork("cpuwork chunks=1000 threads=2 elapsed_ns=105917359 cpu_ns=30691532\n")
	if err != nil {
		t.Fatal(err)
	}
	if w.Elapsed != 105917359 || w.CPU != 30691532 {
		t.Errorf("got %+v", w)
	}
	if _, err := parseCPUWork("Attaching 1 probe...\n"); !errors.Is(err, errNoMatch) {
		t.Errorf("err = %v, want errNoMatch", err)
	}
}

func TestParsePingPong(t *testing.T) {
	out := "thread ponger 10391 1996182941 484031654 1512151287\n" +
		"thread pinger 10390 2002423041 486471091 1515951950\n" +
		"rounds_per_sec 77666\n"
	w, err := parsePingPong(out)
	if err != nil {
		t.Fatal(err)
	}
	if w.Rate != 77666 || w.CPU != 484031654+486471091 || w.Elapsed != 2002423041 {
		t.Errorf("got %+v", w)
	}
	if _, err := parsePingPong("rounds_per_sec 5\n"); !errors.Is(err, errNoMatch) {
		t.Errorf("without thread lines: err = %v, want errNoMatch", err)
	}
}

func TestParseEmber(t *testing.T) {
	stderr := "ember: 205 samples from 3 processes written to /tmp/x.pb.gz\n" +
		"ember: off-CPU: 241741 blocks, 1835 kept by duration-weighted sampling\n" +
		"ember: lost 3: counts_map_full=0 user_stack_collision=3\n" +
		"ember: first sample 58.7ms after start\n" +
		"ember: bpf on_cpu_sample: 5996 runs, 9.83ms run time, 1.64µs per run\n"
	s, err := parseEmber(stderr)
	if err != nil {
		t.Fatal(err)
	}
	if s.Samples != 205 || s.Processes != 3 || s.Blocks != 241741 || s.Lost != 3 || s.FirstSample != 58700*time.Microsecond {
		t.Errorf("got %+v", s)
	}
	if _, err := parseEmber("ember: need root\n"); !errors.Is(err, errNoMatch) {
		t.Errorf("err = %v, want errNoMatch", err)
	}
}

func TestParsePerfRecord(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"[ perf record: Woken up 1 times to write data ]\n[ perf record: Captured and wrote 0.004 MB p.data (27 samples) ]\n", 27, false},
		{"[ perf record: Captured and wrote 0.001 MB /tmp/x/perf.data ]\n", 0, false},
		{"perf: command not found\n", 0, true},
	} {
		n, err := parsePerfRecord(c.in)
		if (err != nil) != c.err || n != c.want {
			t.Errorf("parsePerfRecord(%q) = %d, %v; want %d, error %v", c.in, n, err, c.want, c.err)
		}
	}
}

func TestParseBpftraceCounts(t *testing.T) {
	out := "Attaching 1 probe...\ncpuwork chunks=1 threads=1 elapsed_ns=1 cpu_ns=1\n\n\n" +
		"@[\n    spin+52\n    work_a+14\n, ]: 4\n" +
		"@[\n    spin+52\n,\n    asm_sysvec_apic_timer_interrupt+26\n]: 17\n"
	if n := parseBpftraceCounts(out); n != 21 {
		t.Errorf("got %d, want 21", n)
	}
	if n := parseBpftraceCounts("Attaching 1 probe...\n"); n != 0 {
		t.Errorf("empty map: got %d", n)
	}
}

const perfScript = `cpusplit  1968  1631.477369:   10101010 cpu-clock: 
	            11c4 spin+0x34 (/tmp/eb/cpusplit)
	            120e work_b+0xe (/tmp/eb/cpusplit)
	            13ea run+0x5a (/tmp/eb/cpusplit)
	           2724a __libc_start_call_main+0x7a (/usr/lib/x86_64-linux-gnu/libc.so.6)

cpusplit  1996  1631.471475:   10101010 cpu-clock: 
	            11c4 spin+0x34 (/tmp/eb/cpusplit)
	            11ee work_a+0xe (/tmp/eb/cpusplit)
	            13e5 run+0x55 (/tmp/eb/cpusplit)
	           891f5 start_thread+0x305 (/usr/lib/x86_64-linux-gnu/libc.so.6)

cpusplit  1996  1631.481475:   10101010 cpu-clock: 
	            11c4 spin+0x34 (/tmp/eb/cpusplit)
	            11ee work_a+0xe (/tmp/eb/cpusplit)
	            13e5 run+0x55 (/tmp/eb/cpusplit)
	           891f5 start_thread+0x305 (/usr/lib/x86_64-linux-gnu/libc.so.6)

my comm 7/8 [001] 1700.5: 10101010 cpu-clock: 
	    ffffffff81000000 [unknown] ([kernel.kallsyms])
	            1234 [unknown] (/usr/bin/thing)
`

func TestFirstPerfSample(t *testing.T) {
	got, err := firstPerfSample(perfScript)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1631*time.Second + 471475*time.Microsecond; got != want {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := firstPerfSample("no samples\n"); !errors.Is(err, errNoMatch) {
		t.Errorf("err = %v, want errNoMatch", err)
	}
}
