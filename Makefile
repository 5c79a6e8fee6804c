# physpool — the two commands of the README:
#   make run     install what is missing, build, start physpoold on its
#                embedded default in the background (make stop stops it)
#   make check   install what is missing, build, run the whole test suite
# Other targets: make build, make bench, make bench-rpc, make bench-dpdk,
# make bench-arena, make python, make fuzz, make image,
# make test-deploy, make deb (the Debian package, path printed), make clean.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# Debian 12 packages the build and the tests need.
PACKAGES := cmake ninja-build g++ clang libclang-rt-14-dev libabsl-dev \
            libgtest-dev libgmock-dev libbenchmark-dev python3 \
            libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev libsqlite3-dev \
            grpc-proto libyaml-cpp-dev prometheus-cpp-dev libssl-dev \
            prometheus python3-grpcio python3-protobuf curl openssl \
            qemu-system-x86 busybox-static cpio kmod xz-utils \
            libsystemd-dev pkg-config podman runc debootstrap yamllint python3-yaml nodejs \
            gnuplot-nox libcurl4-openssl-dev nlohmann-json3-dev libcli11-dev libsimdjson-dev \
            python3-venv python3-pip python3-setuptools python3-wheel python3-numpy mypy \
            help2man man-db groff-base gzip bash-completion zsh dpkg-dev lintian binutils systemd

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 60
# Operations of the property test in the sanitizer build (the optimised
# build runs its default of 1,000,000).
ASAN_PROPERTY_OPS ?= 500000

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: stop deps build build-asan check test test-asan fuzz-smoke fuzz run bench bench-renew bench-rpc bench-dpdk bench-arena soak clean image test-deploy python deb

deps:
	@missing=$$(for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing: $$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# npm comes with some builds of nodejs (NodeSource's), from Debian's npm otherwise.
	@command -v npm > /dev/null || { $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends npm; }
	@# kubectl (with its built-in kustomize) is not in Debian 12: it comes with the
	@# machine image (google-cloud-cli's kubectl package). The deploy tests need it.
	@command -v kubectl > /dev/null || echo "WARNING: kubectl not found: the k8s checks (ctest -L deploy) will fail; install kubectl >= 1.27"

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# The Python package (python/, docs/client.md "Python") in a venv that sees
# Debian's packages (numpy), offline: pip builds it with Debian's setuptools
# and bundles $(BUILD)/client/libphyspool-client.so.0 into it.
python: build
	/usr/bin/python3 -m venv --system-site-packages $(BUILD)/venv
	PHYSPOOL_BUILD_DIR=$(abspath $(BUILD)) $(BUILD)/venv/bin/pip install --no-build-isolation --no-index ./python
	@echo "python: $(BUILD)/venv/bin/python (import physpool)"

# clang with ASan+UBSan for the core's tests, and the libFuzzer targets.
$(ASAN_BUILD)/build.ninja:
	CC=clang CXX=clang++ cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" -DPHYSPOOL_SANITIZE=ON \
	  -DPHYSPOOL_BUILD_FUZZERS=ON -DPHYSPOOL_BUILD_BENCHMARKS=OFF

build-asan: deps $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest -LE 'benchmark|soak' --output-on-failure

# The Debian package (docs/deploy.md, "Debian package"): CPack's DEB
# generator over the build tree (cmake/Packaging.cmake), into $(BUILD)/deb/.
deb: build
	rm -rf $(BUILD)/deb
	cpack --config $(BUILD)/CPackConfig.cmake -B $(abspath $(BUILD))/deb
	@echo "deb: $$(ls $(abspath $(BUILD))/deb/*.deb)"

# The container image (deploy/container): a local Debian 12 base from
# debootstrap, then the multi-stage Containerfile. IMAGE names the result.
IMAGE ?= localhost/physpool:dev
image: deps
	deploy/container/build-image.sh $(IMAGE)

# Only the deploy/ checks (also part of make test / make check).
test-deploy: build
	cd $(BUILD) && ctest -L deploy --output-on-failure

# 64 concurrent clients for 60 s against the real daemon (not in make check).
soak: build
	$(BUILD)/tests/server/soak_test

# The core's tests, and the daemon's (which then runs sanitized).
test-asan: build-asan
	cd $(ASAN_BUILD) && PHYSPOOL_PROPERTY_OPS=$(ASAN_PROPERTY_OPS) \
	  ctest -L 'core|server|security' --output-on-failure

# Each fuzz target for FUZZ_SECONDS; a crash or a disagreement fails.
fuzz-smoke: build-asan
	tests/run_fuzzers.sh $(ASAN_BUILD) $(FUZZ_SECONDS)

check: test test-asan fuzz-smoke
	@echo "make check: all tests passed"

fuzz:
	$(MAKE) fuzz-smoke FUZZ_SECONDS=600

# The daemon in the background on its embedded default: returns once it
# serves (its ready file), so that the README's quick start runs in the same
# terminal; its log in $(BUILD)/physpoold.log; `make stop` stops it.
RUN_DIR := $(BUILD)/run
run: build
	@if [ -f $(RUN_DIR)/physpoold.pid ] && kill -0 "$$(cat $(RUN_DIR)/physpoold.pid)" 2>/dev/null; then \
	  echo "physpoold is running already (pid $$(cat $(RUN_DIR)/physpoold.pid); make stop stops it)"; exit 0; fi; \
	mkdir -p $(RUN_DIR); rm -f $(RUN_DIR)/ready.json; \
	setsid $(BUILD)/server/physpoold --ready-file $(RUN_DIR)/ready.json \
	  > $(BUILD)/physpoold.log 2>&1 < /dev/null & echo $$! > $(RUN_DIR)/physpoold.pid; \
	for i in $$(seq 300); do [ -f $(RUN_DIR)/ready.json ] && break; \
	  kill -0 "$$(cat $(RUN_DIR)/physpoold.pid)" 2>/dev/null || break; sleep 0.1; done; \
	if [ ! -f $(RUN_DIR)/ready.json ]; then \
	  echo "physpoold did not start; its log ($(BUILD)/physpoold.log):" >&2; \
	  cat $(BUILD)/physpoold.log >&2; exit 1; fi
	@echo "physpoold: serving on its embedded default (1 GiB sim memory, one implicit admin tenant):"
	@echo "  $$(cat $(RUN_DIR)/ready.json)"
	@echo "  status:   $(BUILD)/cli/physpoolctl pool status"
	@echo "  metrics:  curl -s http://127.0.0.1:9464/metrics | grep ^physpool_"
	@echo "  allocate: /usr/bin/python3 examples/allocate.py"
	@echo "  log:      $(BUILD)/physpoold.log"
	@echo "  stop:     make stop"

# Stops the daemon `make run` started (SIGTERM: it releases nothing, its
# leases stay in its store for the next start).
stop:
	@if [ -f $(RUN_DIR)/physpoold.pid ] && kill -0 "$$(cat $(RUN_DIR)/physpoold.pid)" 2>/dev/null; then \
	  pid=$$(cat $(RUN_DIR)/physpoold.pid); kill -TERM $$pid; \
	  while kill -0 $$pid 2>/dev/null; do sleep 0.1; done; echo "physpoold (pid $$pid) stopped"; \
	else echo "physpoold is not running (no live pid in $(RUN_DIR)/physpoold.pid)"; fi
	@rm -f $(RUN_DIR)/physpoold.pid $(RUN_DIR)/ready.json

bench: build
	$(BUILD)/bench/pool_benchmark --benchmark_counters_tabular=true
	$(BUILD)/bench/restore_benchmark --benchmark_counters_tabular=true

# Renew latency against the real daemon, quiet and during 1 GiB hot
# add/remove of a segment (RENEW_SECONDS per phase).
RENEW_SECONDS ?= 10
bench-renew: build
	$(BUILD)/bench/renew_hotadd_benchmark --seconds $(RENEW_SECONDS)

# The RPC path against gRPC's floor in the same run (docs/performance.md,
# "The RPC path"): 1 and 8 clients, RPC_SECONDS per workload; the table on
# stdout, JSON and the latency plot in $(BUILD)/bench-rpc/.
RPC_SECONDS ?= 5
bench-rpc: build
	mkdir -p $(BUILD)/bench-rpc
	$(BUILD)/bench/rpc_benchmark --seconds $(RPC_SECONDS) --clients 1,8 \
	  --json $(BUILD)/bench-rpc/rpc.json --cdf $(BUILD)/bench-rpc
	gnuplot -e "dir='$(BUILD)/bench-rpc'; out='$(BUILD)/bench-rpc/rpc.png'" bench/plot_rpc.gp
	@echo "bench-rpc: $(BUILD)/bench-rpc/rpc.json, $(BUILD)/bench-rpc/rpc.png"

# The allocation core beside DPDK's rte_malloc and rte_memzone, one seeded
# churn workload in one run (docs/performance.md, "Beside DPDK"). DPDK is
# installed here only (libdpdk-dev, Debian 12: 22.11), never by deps or
# make check; bench/dpdk_compare is built only here (EXCLUDE_FROM_ALL) and
# only where CMake finds DPDK. The EAL needs root (no hugepages, no PCI,
# 1536 MiB of ordinary memory).
DPDK_STEPS ?= 200000
DPDK_EAL := -l 0 --no-huge --no-pci --no-shconf --no-telemetry -m 1536 --iova-mode=va
bench-dpdk: deps
	@dpkg-query -W -f='$${Status}' libdpdk-dev 2>/dev/null | grep -q "install ok installed" || { \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends libdpdk-dev; }
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j $(JOBS) --target dpdk_compare
	$(SUDO) $(BUILD)/bench/dpdk_compare $(DPDK_EAL) -- --steps $(DPDK_STEPS)

# physpool::Arena (issue 26) with 1, 2 and 8 threads on the same churn
# workload at 80 % of a 1 GiB arena leased from a real physpoold, beside
# the daemon's Allocate+Release RPC pair and rte_malloc_socket on the same
# requests, in one run. libdpdk-dev is installed as
# for bench-dpdk; bench/arena_benchmark_dpdk is built only here. The EAL
# heap is 1 GiB of ordinary memory (-m 1024, root), the arena's size.
ARENA_STEPS ?= 200000
# e.g. ARENA_ARGS="--placement nextfit"
ARENA_ARGS ?=
ARENA_EAL := -l 0 --no-huge --no-pci --no-shconf --no-telemetry -m 1024 --iova-mode=va
bench-arena: deps
	@dpkg-query -W -f='$${Status}' libdpdk-dev 2>/dev/null | grep -q "install ok installed" || { \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends libdpdk-dev; }
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j $(JOBS) --target arena_benchmark_dpdk physpoold
	$(SUDO) $(BUILD)/bench/arena_benchmark_dpdk $(ARENA_EAL) -- --steps $(ARENA_STEPS) $(ARENA_ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
