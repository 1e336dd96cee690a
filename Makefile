# Baton front door: wraps meson + ninja (as QEMU does).
#   make up      install what is missing, build, start a local system, demo request
#   make test    install, build, run every test, then the unit, node and front-door
#                tests under ASan+UBSan
#   make down    stop what `make up` started
#   make fault   the fault matrix: TRIALS (100) per fault kind, SEED (1)
#   make soak    load with a fault every 30s for DURATION (30m); fails on growth
#   make leaks   the soak's cluster under ASan: LOADS (40) loads, SIGTERM, LeakSanitizer
#   make asan    the whole integration suite under ASan+UBSan (build-asan)
#   make tsan    the threaded code's tests under ThreadSanitizer (build-tsan)
#   make bench   build and run the benchmarks (LLAMA_BENCH=PATH: llama.cpp beside the engine)
#   make fuzz    build the libFuzzer targets (clang) and run each for FUZZ_TIME
#                seconds (default 300); prints executions, exec/s, crashes
#   make image   build the container image baton:<version> (deploy/image/Containerfile)
#   make image-test  build it and run a smoke test inside (slow; not in make test)
#   make deps | build | clean

BUILD      ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
TRIALS     ?= 100
SEED       ?= 1
DURATION   ?= 30m
LOADS      ?= 40
MESON_ARGS ?=
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_TIME  ?= 300

# nvcc is found on PATH; CUDA 13 lives here on Debian machines with CUDA.
export PATH := $(PATH):/usr/local/cuda/bin

# how much slower the sanitizer builds are allowed to be: meson's
# --timeout-multiplier and BATON_TEST_TIME_SCALE, which multiplies the
# bounds inside the test harnesses (how long a test waits, never what it
# asserts; docs/internals/faults.md "Sanitizers")
ASAN_TIME_SCALE ?= 4
TSAN_TIME_SCALE ?= 8

SANITIZER_ENV = \
	BATON_TEST_TIME_SCALE=$(ASAN_TIME_SCALE) \
	ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1 \
	UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0

# halt_on_error: the first race fails the test; the suppressions file
# says why each entry is there. UCX_MEM_EVENTS=no: UCX's madvise hook
# (libucm) takes a lock in a thread that glibc is tearing down, inside
# TSan's interceptor, which crashes the daemons at exit (SIGSEGV in
# __tsan::MutexPreReadLock from ucm_madvise in start_thread)
TSAN_ENV = \
	BATON_TEST_TIME_SCALE=$(TSAN_TIME_SCALE) UCX_MEM_EVENTS=no \
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/tsan.supp

# the tests whose code runs threads: the thread pool (base/loop's
# workers), the gRPC completion-queue bridge (rpc/*), the kvstore's io
# threads, the node's scheduler worker (node/*, and a real cluster), the
# kvstore's planner thread, the xfer prefault thread
TSAN_TESTS = base/loop rpc/rpc rpc/stress rpc/tls kvstore/store kvstore/disk \
	kvstore/events node/lifecycle node/xstats daemon/daemon engine/forward_det \
	node/cluster-shm kvstore/cluster-shm kvstore/plan_lane xfer/prefault

.PHONY: all deps build test test-unit test-asan fault soak leaks asan tsan up down bench fuzz image image-test clean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized -Dwerror=true $(MESON_ARGS)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debug -Dwerror=true -Dcuda=disabled \
		-Db_sanitize=address,undefined $(MESON_ARGS)

test: deps build $(ASAN_BUILD)/build.ninja
	@rc=0; \
	meson test -C $(BUILD) --print-errorlogs --num-processes $(JOBS) || rc=1; \
	ninja -C $(ASAN_BUILD) -j $(JOBS) || rc=1; \
	$(SANITIZER_ENV) meson test -C $(ASAN_BUILD) --suite unit --print-errorlogs \
		--num-processes $(JOBS) --timeout-multiplier $(ASAN_TIME_SCALE) || rc=1; \
	$(SANITIZER_ENV) meson test -C $(ASAN_BUILD) --suite node --suite front --logbase testlog-node --print-errorlogs \
		--num-processes 1 --timeout-multiplier $(ASAN_TIME_SCALE) || rc=1; \
	scripts/test-summary.py $(BUILD) $(ASAN_BUILD) || rc=1; \
	exit $$rc

fault: deps build
	BATON_BUILD_ROOT=$(CURDIR)/$(BUILD) tests/fault/fault_matrix.py --trials $(TRIALS) \
		--seed $(SEED)

soak: deps build
	BATON_BUILD_ROOT=$(CURDIR)/$(BUILD) tests/fault/soak.py --duration $(DURATION) \
		--seed $(SEED)

leaks: deps build $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD) -j $(JOBS) router/baton-router decode_node/baton-decode \
		prefill_node/baton-prefill kvstore/baton-kvstore cli/batonctl tools/baton-run \
		tools/baton-mkmodel
	$(SANITIZER_ENV) BATON_BUILD_ROOT=$(CURDIR)/$(ASAN_BUILD) tests/fault/leak_check.py \
		--loads $(LOADS) --seed $(SEED)

asan: deps build $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD) -j $(JOBS)
	$(SANITIZER_ENV) meson test -C $(ASAN_BUILD) --suite integration \
		--logbase testlog-integration --print-errorlogs --num-processes 1 \
		--timeout-multiplier $(ASAN_TIME_SCALE)

$(TSAN_BUILD)/build.ninja:
	meson setup $(TSAN_BUILD) --buildtype=debug -Dwerror=true -Dcuda=disabled \
		-Db_sanitize=thread $(MESON_ARGS)

tsan: deps $(TSAN_BUILD)/build.ninja
	ninja -C $(TSAN_BUILD) -j $(JOBS)
	$(TSAN_ENV) meson test -C $(TSAN_BUILD) --print-errorlogs --num-processes 1 \
		--timeout-multiplier $(TSAN_TIME_SCALE) $(TSAN_TESTS)

test-unit: build
	meson test -C $(BUILD) --suite unit --print-errorlogs

up: deps build
	@scripts/up.sh

down:
	@scripts/down.sh

bench: deps build
	@scripts/bench.sh $(BUILD)

fuzz: build
	@scripts/fuzz.sh $(BUILD) $(FUZZ_TIME) $(FUZZ_TARGETS)

# podman, buildah or docker (with an engine), whichever works here; a clear
# message and exit 1 when none does
image:
	@deploy/image/build-image

# the image, its build time and size, then every binary's --help and a
# tiny cluster serving a completion inside it (deploy/image/smoke.sh)
image-test:
	@deploy/image/test-image

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD)
