# Thin wrapper over .ci/setup (which installs what is missing on Debian 12).
.PHONY: all build demo test valgrind asan tsan lint bench bench-threads clean

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

# ThreadSanitizer over the specs that run threads, against a TSan build of
# loom.core. The interpreter is not instrumented, so the TSan runtime is
# preloaded. TSAN_SPECS run loom inside the busted process (preloaded).
# TSAN_PROCESS_SPECS only start other processes, which get the preload
# through LOOM_CHILD_PREFIX: a shell (io.popen) started with libtsan
# preloaded crashes on this system, so busted itself is not preloaded there.
TSAN_SPECS = spec/thread_spec.lua spec/thread_cancel_spec.lua
TSAN_PROCESS_SPECS = spec/thread_close_spec.lua
TSAN_ENV = env LD_PRELOAD=$$(gcc -print-file-name=libtsan.so) \
  TSAN_OPTIONS=halt_on_error=1:exitcode=66:suppressions=$(CURDIR)/spec/tsan.supp

tsan:
	LOOM_BUILD_DIR=build-tsan BUILD_TYPE=Debug LOOM_CMAKE_FLAGS=-DLOOM_TSAN=ON \
	  LOOM_TEST_PREFIX="$(TSAN_ENV)" bash .ci/setup test $(TSAN_SPECS)
	LOOM_BUILD_DIR=build-tsan BUILD_TYPE=Debug LOOM_CMAKE_FLAGS=-DLOOM_TSAN=ON \
	  LOOM_CHILD_PREFIX="$(TSAN_ENV)" bash .ci/setup test $(TSAN_PROCESS_SPECS)

lint:
	command -v luacheck >/dev/null || apt-get install -y -qq lua-check
	luacheck --codes lua spec examples bench

bench:
	bash bench/run.sh

# Worker threads: round trip against AnyIO and Node.js, CPU-bound speed-up;
# writes bench/results/threads.md.
bench-threads:
	bash bench/threads/run.sh

clean:
	rm -rf build build-asan build-tsan build-rel bench/out
