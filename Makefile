# Thin wrapper over .ci/setup (which installs what is missing on Debian 12).
.PHONY: all build demo test valgrind asan lint bench clean alloc-sweep fuzz

all: build

build:
	bash .ci/setup build

demo:
	bash .ci/setup demo

test:
	bash .ci/setup test

# The whole suite under valgrind: invalid accesses and definite leaks fail.
# Example subprocesses inherit LOOM_TEST_PREFIX and run under valgrind too.
valgrind:
	command -v valgrind >/dev/null || apt-get install -y -qq valgrind
	LOOM_TEST_PREFIX="valgrind -q --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=9" \
	  bash .ci/setup test

# The whole suite against an ASan+UBSan build of loom.core. The interpreter
# is not instrumented, so the ASan runtime is preloaded; Lua's own
# allocations at exit are not leaks of ours, hence detect_leaks=0 (valgrind
# covers leaks).
asan:
	LOOM_BUILD_DIR=build-asan BUILD_TYPE=Debug LOOM_CMAKE_FLAGS=-DLOOM_SANITIZE=ON \
	  LOOM_TEST_PREFIX="env LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1" \
	  bash .ci/setup test
	BUILD_TYPE=Debug LOOM_CMAKE_FLAGS=-DLOOM_SANITIZE=ON \
	  $(MAKE) alloc-sweep ALLOC_BUILD=build-asan \
	  ALLOC_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer"

# The allocation-failure sweep (spec/alloc/host.c): the workload of
# spec/alloc/workload.lua once per N, for every N, with the N-th allocation
# failing for good (permanent), with two failures then memory back
# (transient), and with one failure (single: a full emergency collection at
# that allocation). The suite runs a sample (spec/alloc_spec.lua). Under `make
# asan` the host and loom.core are instrumented, and LeakSanitizer checks
# every case's C allocations.
ALLOC_BUILD ?= build
ALLOC_CFLAGS ?=
alloc-sweep:
	LOOM_BUILD_DIR=$(ALLOC_BUILD) bash .ci/setup build
	cc -O1 -g $(ALLOC_CFLAGS) -o $(ALLOC_BUILD)/alloc-host spec/alloc/host.c \
	  $$(pkg-config --cflags --libs lua5.4) -ldl
	LOOM_BUILD_DIR=$(ALLOC_BUILD) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(ALLOC_BUILD)/alloc-host sweep $(CURDIR) permanent 1 0 1
	LOOM_BUILD_DIR=$(ALLOC_BUILD) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(ALLOC_BUILD)/alloc-host sweep $(CURDIR) transient 1 0 1
	LOOM_BUILD_DIR=$(ALLOC_BUILD) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(ALLOC_BUILD)/alloc-host sweep $(CURDIR) single 1 0 1

# The misuse fuzzer, long: LOOM_FUZZ_SEED and LOOM_FUZZ_COUNT choose the
# run (the suite runs a short one, spec/fuzz_spec.lua).
fuzz: build
	LOOM_FUZZ_COUNT=$${LOOM_FUZZ_COUNT:-200000} bash .ci/setup test spec/fuzz_spec.lua

lint:
	command -v luacheck >/dev/null || apt-get install -y -qq lua-check
	luacheck --codes lua spec examples bench

bench:
	bash bench/run.sh

clean:
	rm -rf build build-asan build-rel bench/out
