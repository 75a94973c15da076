package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// row is one kernel x check of the final table.
type row struct {
	line, version, check, verdict, detail string
	seconds                               float64
	failed                                bool
}

type bootSummary struct {
	k kernel
	r bootResult
}

// judge turns a guest's result into the table's verdict with the
// expectation table, and says whether it fails the matrix.
func judge(line string, c checkResult) (string, bool) {
	want := expected(line, c.name)
	switch {
	case want == P && c.status == "pass":
		return "pass", false
	case want == P:
		return "FAIL", true
	case c.status == "unsupported":
		return "unsupported (ok)", false
	case c.status == "skip":
		return "skip (unsupported)", false
	case c.status == "pass":
		// Works where the table says it should not: not a failure of
		// Ember, but the table (and the README) should say so.
		return "pass (want unsupported)", false
	}
	return "FAIL (want a one-line refusal)", true
}

// kernelRows makes one row per check of one kernel, a failed row for a
// check the guest never reported (timeout, crash).
func kernelRows(k kernel, r bootResult, only string) []row {
	got := map[string]checkResult{}
	for _, c := range r.checks {
		got[c.name] = c
	}
	var rows []row
	for _, gc := range guestChecks {
		if only != "" && !contains(strings.Split(only, ","), gc.name) {
			continue
		}
		c, ok := got[gc.name]
		if !ok {
			why := "no result"
			if r.err != nil {
				why += ": " + r.err.Error()
			}
			if r.panicked != "" {
				why += ": " + r.panicked
			}
			rows = append(rows, row{k.line.Name, k.pkg.Version, gc.name, "FAIL", why, 0, true})
			continue
		}
		verdict, failed := judge(k.line.Name, c)
		rows = append(rows, row{k.line.Name, k.pkg.Version, c.name, verdict, c.detail, c.seconds, failed})
	}
	return rows
}

// printTable writes the kernels and the results, and returns the number of
// checks that failed the matrix.
func printTable(w io.Writer, rows []row, boots []bootSummary) int {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL\tPACKAGE\tVERSION\tSUITE\tBOOT+CHECKS\tUNAME")
	for _, b := range boots {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0fs\t%s\n", b.k.line.Name, b.k.pkg.Package, b.k.pkg.Version, b.k.pkg.Suite, b.r.seconds, b.r.uname)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL\tVERSION\tCHECK\tRESULT\tSECONDS\tDETAIL")
	failed := 0
	for _, r := range rows {
		if r.failed {
			failed++
		}
		detail := r.detail
		if len(detail) > 140 {
			detail = detail[:137] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f\t%s\n", r.line, r.version, r.check, r.verdict, r.seconds, detail)
	}
	tw.Flush()
	return failed
}
