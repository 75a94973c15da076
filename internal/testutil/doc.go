// Package testutil holds what Ember's tests share: gating on kernel features
// (a skip that EMBER_REQUIRE_BPF=1 turns into a failure, so that CI cannot go
// green by skipping) and building workloads from sources in testdata.
package testutil
