# The project's entry points. `make demo` and `make test` each install what they need first.
SHELL := /bin/bash
# Swift lives in /opt/swift on the project's machines; find it even when PATH lacks it.
export PATH := $(PATH):/opt/swift/usr/bin
SWIFT ?= swift

.PHONY: deps build release demo test clean microbench bench

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Main job: start an agent on the embedded single-host topology, show vioctl, stop it.
demo: release
	@bash scripts/demo.sh "$$($(SWIFT) build -c release --show-bin-path)"

# Every test (unit, process-level, and multi-host ones that need root or say they skipped).
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-xctest

clean:
	rm -rf .build

# VIO next to the alternatives (bare ring, UDS, TCP), pinned, several runs; bench/results.json.
bench: release
	@command -v python3 >/dev/null || apt-get install -y -qq python3 >/dev/null
	@bash scripts/bench.sh "$$($(SWIFT) build -c release --show-bin-path)"

# Micro-benchmarks of hot paths (ordo-one/benchmark), in their own build folder.
microbench: deps
	VIO_BENCHMARKS=1 $(SWIFT) package --scratch-path .build-bench benchmark --target HotPaths
