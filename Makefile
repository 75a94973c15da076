# Ember's build, run and test entry points. Most targets need root (BPF).
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)
EMBER := bin/ember
DURATION ?= 10s

# Debian packages the project needs: clang/llvm and libbpf headers for
# `make generate`, perf and bpftrace to compare with, binutils for readelf,
# gdb to check unwinding, chromium for the flame graph browser test,
# debuginfod (elfutils' server and debuginfod-find) for the debuginfod client's tests.
# util-linux and mount: setpriv, unshare and mount for the tests that run Ember
# as an unprivileged user and a JIT in namespaces of its own.
# nodejs for the JIT tests (node --perf-basic-prof); rustc and rustfilt for the
# Rust name tests (rustfilt is the reference the demangled names must equal).
DEB_PACKAGES := clang-19 llvm-19 libbpf-dev bpftool linux-perf bpftrace binutils gcc g++ libc6-dev gdb chromium xz-utils debuginfod elfutils libc6-dbg util-linux mount nodejs rustc rustfilt

.PHONY: all build generate check-generate run test soak test-kernels bench lint fuzz deps clean

all: build

build:
	$(GO) build -o $(EMBER) ./cmd/ember

# Rebuild the BPF objects (committed, so that `go build` needs no clang).
generate: deps
	cd bpf && $(GO) generate .

# CI: the committed BPF objects must match their sources.
check-generate: generate
	git diff --exit-code -- bpf/ || (echo "bpf/: committed generated files are stale; run make generate" >&2; exit 1)

# Installs what is missing, with apt, once.
deps:
	@missing=""; for c in clang-19 llvm-symbolizer-19 llvm-strip-19 bpftool perf bpftrace readelf objcopy addr2line gcc g++ gdb chromium xz debuginfod debuginfod-find eu-readelf setpriv unshare mount node rustc rustfilt; do \
		command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	[ -f /usr/include/bpf/bpf_helpers.h ] || missing="$$missing libbpf-dev"; \
	[ -d /usr/lib/debug/.build-id ] || missing="$$missing libc6-dbg"; \
	if [ -n "$$missing" ]; then echo "installing (missing:$$missing)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; fi

# Profile this machine for $(DURATION): a pprof and an HTML flame graph, then the top functions.
run: build
	./$(EMBER) record --duration $(DURATION) -o ember.pb.gz
	./$(EMBER) flamegraph ember.pb.gz -o ember.html
	$(GO) tool pprof -top -nodecount=25 ember.pb.gz
	@echo "flame graph: ember.html"

test: deps
	$(GO) vet ./...
	# One package at a time: the end-to-end tests measure CPU shares and
	# off-CPU time, which other packages' compilers and fuzzers would disturb.
	$(GO) test -p 1 -count=1 -timeout 60m ./...

# The agent under churn (thousands of short processes) and a slow sink for
# SOAK (10m in CI; an hour by hand: make soak SOAK=1h): RSS plus BPF map
# memory under --memory-limit, no late drain, every interval shipped or
# counted as dropped (root).
SOAK ?= 10m
soak: deps
	EMBER_SOAK=$(SOAK) $(GO) test -count=1 -timeout 0 -run '^TestAgentSoak$$' -v ./internal/agent

# Boot Debian's kernels (5.10, 6.1, 6.1-rt, 6.12, 6.18, newest 7.x) in qemu and
# run Ember's checks in each (root; ~20 min on 2 CPUs under TCG): one table on
# stdout, logs in build/kernels/logs. KERNELS=5.10,6.1 runs a subset.
KERNELS ?=
test-kernels:
	CGO_ENABLED=0 $(GO) build -o build/bin/emberkernels ./cmd/emberkernels
	build/bin/emberkernels -kernels "$(KERNELS)"

# Ember beside perf and bpftrace, in alternating rounds (root; ~12 min on 2 CPUs):
# one table on stdout and in bench/results.md. Go micro-benchmarks: go test -bench.
# BENCHFLAGS passes flags to cmd/emberbench, e.g. BENCHFLAGS='-rounds 3 -note "shared machine"'.
bench: deps build
	$(GO) run ./cmd/emberbench -ember $(EMBER) -out bench/results.md $(BENCHFLAGS)

# gofmt, go vet, and arm64: vet and every package's tests compile there too.
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfe[lb].go$$'))" || (gofmt -l . ; exit 1)
	$(GO) vet ./...
	GOARCH=arm64 $(GO) vet ./...
	@for pkg in $$($(GO) list ./...); do GOARCH=arm64 $(GO) test -c -o /dev/null $$pkg >/dev/null || exit 1; done

# Each fuzz target for FUZZTIME executions. A count, not a duration: with a
# duration Go (before 1.27) can fail a target at the deadline with "context
# deadline exceeded" and no crasher, a race in its fuzzing coordinator
# (go.dev/issue/75804) that CI hit on FuzzDemangle and FuzzParseMaps.
FUZZTIME ?= 500000x
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; done

clean:
	rm -rf bin ember.pb.gz ember.html
