package main

// expect is what a check should do on a kernel line.
type expect byte

const (
	// P: the check must pass; the matrix fails if it does not.
	P expect = 'P'
	// U: the kernel lacks what the check needs. Ember must refuse it with
	// a one-line error naming what is missing (no verifier dump) and exit
	// non-zero; that is a pass, shown as "unsupported (ok)". Accuracy tests
	// (test-*) of an unsupported method are not run: the record check of
	// the same method already proves the refusal.
	U expect = 'U'
)

// expectColumns are the kernel lines of expectations' columns, in order.
var expectColumns = [...]string{"5.10", "6.1", "6.1-rt", "6.12", "6.18", "7.x"}

// expectations is the support matrix, one row per check and one column per
// kernel line, as the README states it:
//   - unwind tables walk with bpf_loop (5.17); without them Ember walks with
//     frame pointers (auto picks fp, an explicit --unwind tables is refused);
//   - off-CPU sys-exit needs BPF task storage usable from tracing programs
//     (5.11); raw-tp works everywhere;
//   - task-work needs bpf_task_work (6.18).
//
// The rows are the checks the guest runs (checks.go), in the order it runs
// them.
var expectations = []struct {
	check string
	want  [len(expectColumns)]expect
}{
	//                           5.10 6.1 rt 6.12 6.18 7.x
	{"record-system", [...]expect{P, P, P, P, P, P}},
	{"record-pid", [...]expect{P, P, P, P, P, P}},
	{"record-command", [...]expect{P, P, P, P, P, P}},
	{"unwind-fp", [...]expect{P, P, P, P, P, P}},
	{"unwind-tables", [...]expect{U, P, P, P, P, P}},
	{"offcpu-auto", [...]expect{P, P, P, P, P, P}},
	{"offcpu-task-work", [...]expect{U, U, U, U, P, P}},
	{"offcpu-sys-exit", [...]expect{U, P, P, P, P, P}},
	{"offcpu-raw-tp", [...]expect{P, P, P, P, P, P}},
	{"wall-auto", [...]expect{P, P, P, P, P, P}},
	{"wall-task-work", [...]expect{U, U, U, U, P, P}},
	{"wall-sys-exit", [...]expect{U, P, P, P, P, P}},
	{"wall-raw-tp", [...]expect{P, P, P, P, P, P}},
	{"agent", [...]expect{P, P, P, P, P, P}},
	{"btf-flag", [...]expect{P, P, P, P, P, P}},
	{"btf-env", [...]expect{P, P, P, P, P, P}},
	{"test-cpusplit", [...]expect{P, P, P, P, P, P}},
	{"test-offcpu-auto", [...]expect{P, P, P, P, P, P}},
	{"test-offcpu-sys-exit", [...]expect{U, P, P, P, P, P}},
	{"test-offcpu-raw-tp", [...]expect{P, P, P, P, P, P}},
	{"dmesg", [...]expect{P, P, P, P, P, P}},
}

// expected returns what check should do on kernel line; P for a line or
// check the table does not know.
func expected(line, check string) expect {
	col := -1
	for i, l := range expectColumns {
		if l == line {
			col = i
		}
	}
	for _, row := range expectations {
		if row.check == check && col >= 0 {
			return row.want[col]
		}
	}
	return P
}
