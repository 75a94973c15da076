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
# Rust name tests (rustfilt is the reference the demangled names must equal);
# make for building the -X perf Python below.
DEB_PACKAGES := clang-19 llvm-19 libbpf-dev bpftool linux-perf bpftrace binutils gcc g++ libc6-dev gdb chromium xz-utils debuginfod elfutils libc6-dbg util-linux mount nodejs rustc rustfilt make

# A CPython with -X perf (3.12+) and frame pointers, for the JIT tests: Debian
# 12's python3 is 3.11, which has no perf trampolines, and Debian 12 packages no
# later one. deps builds Debian 13's python3.13 source package, fetched by apt
# through a private sources list (the host's apt is left as it was) from the
# host's own Debian mirror, into PERF_PYTHON_PREFIX, with the frame pointers
# Python's perf documentation asks for (x86-64's trampoline keeps none of its
# own, so a frame-pointer step through it needs the interpreter's).
PERF_PYTHON_PREFIX := /opt/ember-python3.13
PERF_PYTHON := $(PERF_PYTHON_PREFIX)/bin/python3.13

.PHONY: all build generate check-generate run test soak test-kernels bench lint fuzz deps perf-python clean

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
	@missing=""; for c in clang-19 llvm-symbolizer-19 llvm-strip-19 bpftool perf bpftrace readelf objcopy objdump addr2line gcc g++ gdb chromium xz debuginfod debuginfod-find eu-readelf setpriv unshare mount node rustc rustfilt make; do \
		command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	[ -f /usr/include/bpf/bpf_helpers.h ] || missing="$$missing libbpf-dev"; \
	[ -d /usr/lib/debug/.build-id ] || missing="$$missing libc6-dbg"; \
	if [ -n "$$missing" ]; then echo "installing (missing:$$missing)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; fi
	@$(PERF_PYTHON) -X perf -c '' 2>/dev/null || $(MAKE) --no-print-directory perf-python

# Builds PERF_PYTHON (see above); about 5 minutes on 2 CPUs.
perf-python: SHELL := /bin/bash
perf-python:
	@echo "building $(PERF_PYTHON) from Debian's python3.13 source package"
	@set -e; d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	uri=$$(apt-get indextargets --format '$$(REPO_URI)' 'Created-By: Packages' | grep -v security | head -n 1); \
	[ -n "$$uri" ] || { echo "perf-python: the host's apt has no Debian mirror configured" >&2; exit 1; }; \
	mkdir -p "$$d/etc/sources.list.d" "$$d/state/lists/partial" "$$d/cache/archives/partial" "$$d/src"; \
	echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $$uri trixie main" > "$$d/etc/sources.list"; \
	: > "$$d/state/status"; \
	apt="apt-get -q -o Dir::Etc::SourceList=$$d/etc/sources.list -o Dir::Etc::SourceParts=$$d/etc/sources.list.d -o Dir::State=$$d/state -o Dir::State::status=$$d/state/status -o Dir::Cache=$$d/cache -o Acquire::Languages=none"; \
	$$apt update >/dev/null; \
	(cd "$$d/src" && $$apt source --download-only python3.13 >/dev/null); \
	tar -C "$$d/src" -xf "$$d"/src/python3.13_*.orig.tar.xz; \
	cd "$$d"/src/Python-3.13.*/; \
	{ ./configure --prefix=$(PERF_PYTHON_PREFIX) --without-ensurepip --disable-test-modules CFLAGS="-fno-omit-frame-pointer -mno-omit-leaf-frame-pointer" && \
		$(MAKE) -j$$(nproc) && $(MAKE) altinstall; } >"$$d/build.log" 2>&1 || { tail -n 30 "$$d/build.log" >&2; exit 1; }; \
	$(PERF_PYTHON) -X perf -c 'import sys; print(sys.version)'

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
# SOAK (10m by default; an hour by hand: make soak SOAK=1h, or EMBER_SOAK=60m
# make soak): RSS plus BPF map memory under --memory-limit
# (EMBER_SOAK_LIMIT_MIB, default 128), no late drain, every interval shipped
# or counted as dropped (root).
SOAK ?= $(or $(EMBER_SOAK),10m)
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
