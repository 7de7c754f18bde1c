# The project's entry points. `make demo` and `make test` each install what they need first.
SHELL := /bin/bash
# Swift lives in /opt/swift on the project's machines; find it even when PATH lacks it.
export PATH := $(PATH):/opt/swift/usr/bin
SWIFT ?= swift

.PHONY: deps build release demo test clean microbench bench agent-instructions install

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

# Main job: start an agent on the embedded single-host topology, show vioctl, stop it.
demo: release
	@bash scripts/demo.sh "$$($(SWIFT) build -c release --show-bin-path)"

# Every test (unit, process-level, and multi-host ones that need root or say they skipped),
# then the RDMA lab's (two QEMU guests with soft-RoCE, scripts/rdma-lab) in a step of their
# own: the guests take both cores, and no timing-bound test runs beside them.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-xctest
	VIO_LAB_TESTS=1 $(SWIFT) test --skip-build --disable-xctest --filter RDMALabTests

# libvio for C/C++ engines: libvio.so, vio.h and vio.pc under PREFIX, plus the tools and the
# agent's systemd unit (SYSTEMD_UNIT_DIR; `systemctl enable --now vio-agent` then).
# Then: cc app.c $$(PKG_CONFIG_PATH=$(PREFIX)/lib/pkgconfig pkg-config --cflags --libs vio)
PREFIX ?= /usr/local
SYSTEMD_UNIT_DIR ?= /etc/systemd/system
install: release
	@bin="$$($(SWIFT) build -c release --show-bin-path)"; \
	install -d "$(PREFIX)/lib/pkgconfig" "$(PREFIX)/include" "$(PREFIX)/bin"; \
	install -m 0755 "$$bin/libvio.so" "$(PREFIX)/lib/libvio.so"; \
	install -m 0644 include/vio.h "$(PREFIX)/include/vio.h"; \
	sed "s|@PREFIX@|$(PREFIX)|" scripts/vio.pc.in > "$(PREFIX)/lib/pkgconfig/vio.pc"; \
	for t in vio-agent vioctl vio-probe; do install -m 0755 "$$bin/$$t" "$(PREFIX)/bin/$$t"; done; \
	install -d "$(SYSTEMD_UNIT_DIR)"; \
	sed "s|@PREFIX@|$(PREFIX)|" scripts/vio-agent.service.in > "$(SYSTEMD_UNIT_DIR)/vio-agent.service"; \
	echo "installed libvio, vio.h, vio.pc and the tools under $(PREFIX), vio-agent.service in $(SYSTEMD_UNIT_DIR)"

clean:
	rm -rf .build

# VIO next to the alternatives (bare ring, UDS, TCP), pinned, several runs; bench/results.json.
bench: release
	@command -v python3 >/dev/null || apt-get install -y -qq python3 >/dev/null
	@bash scripts/bench.sh "$$($(SWIFT) build -c release --show-bin-path)"

# Instructions the agent runs per cross-host round trip (valgrind; root): deterministic where
# timings on this VM are not.
agent-instructions: release
	@bash scripts/agent-instructions.sh "$$($(SWIFT) build -c release --show-bin-path)"

# Micro-benchmarks of hot paths (ordo-one/benchmark), in their own build folder.
microbench: deps
	VIO_BENCHMARKS=1 $(SWIFT) package --scratch-path .build-bench benchmark --target HotPaths
