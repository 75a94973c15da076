package main

import "testing"

// The detail column is read from the outputs of ember and its test binary.
func TestDetails(t *testing.T) {
	out := `    offcpu_test.go:114: nap_sleep off-CPU: 5.136s measured, 5.536s true (-7.2%)
    offcpu_test.go:114: nap_sleep off-CPU: off by -7.2%, tolerance ±5%
    record_test.go:40: 9887 samples; inclusive shares map[spin:0.9914028522302013 work_a:0.5881460503691717] (want map[spin:1 work_a:0.6] ± 3 pp)
    record_test.go:41: work_a: inclusive share 0.540, want 0.600 ± 0.030
--- FAIL: TestOffCPUKnownBlocks (9.32s)`
	if got, want := testSummary(out), "nap_sleep off-CPU: 5.136s measured, 5.536s true (-7.2%); 9887 samples: spin 0.991 work_a 0.588"; got != want {
		t.Errorf("testSummary = %q, want %q", got, want)
	}
	if got, want := testFailure(out), "offcpu_test.go:114: nap_sleep off-CPU: off by -7.2%, tolerance ±5%"; got != want {
		t.Errorf("testFailure = %q, want %q", got, want)
	}
	shares := "    record_test.go:39: 2882 samples; inclusive shares map[work_a:0.54] (want map[work_a:0.6] ± 3 pp)\n    record_test.go:39: work_a: inclusive share 0.540, want 0.600 ± 0.030\n"
	if got, want := testFailure(shares), "record_test.go:39: work_a: inclusive share 0.540, want 0.600 ± 0.030"; got != want {
		t.Errorf("testFailure = %q, want %q", got, want)
	}
	s := parseSummary("ember: 0 samples from 1 processes written to x\nember: off-CPU: 1287 blocks, 1028 kept by duration-weighted sampling (method raw-tp, bpf_ktime_get_ns)\n")
	if s.samples != 0 || s.blocks != 1287 || s.method != "raw-tp" {
		t.Errorf("parseSummary = %+v", s)
	}
	if r := refusal(cmdResult{exit: 1, stderr: "ember: --unwind tables: needs bpf_loop (Linux 5.17)\n"}); r.status != "unsupported" {
		t.Errorf("one-line refusal judged %+v", r)
	}
	if r := refusal(cmdResult{exit: 1, stderr: "ember: load: verifier log:\n\t0: R1=ctx()\n"}); r.status != "fail" {
		t.Errorf("verifier dump judged %+v", r)
	}
}
