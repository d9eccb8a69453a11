# Thin wrapper over .ci/setup (which installs what is missing on Debian 12).
.PHONY: all build demo test valgrind asan tsan lint lint-lua lint-c format \
  format-check bench bench-core bench-embed bench-process bench-threads clean \
  rock rockspecs release-check docs-check \
  bench-remote bench-host60 bench-heap alloc-sweep fuzz bench-floor

all: build

build:
	bash .ci/setup build

demo:
	bash .ci/setup demo

test:
	bash .ci/setup test

# The whole suite under valgrind: invalid accesses and definite leaks fail.
# Example subprocesses inherit LOOM_TEST_PREFIX and run under valgrind too.
# --fair-sched: valgrind runs one thread at a time, and its default lock let a
# worker thread that busy-waits (thread_spec's spin) starve the loop thread
# past the spin, so a spec looking at the task meanwhile found it finished.
valgrind:
	command -v valgrind >/dev/null || apt-get install -y -qq valgrind
	LOOM_TEST_PREFIX="valgrind -q --fair-sched=yes --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=9" \
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

# ThreadSanitizer over the specs that run threads, against a TSan build of
# loom.core. The interpreter is not instrumented, so the TSan runtime is
# preloaded. TSAN_SPECS run loom inside the busted process (preloaded).
# TSAN_PROCESS_SPECS only start other processes, which get the preload
# through LOOM_CHILD_PREFIX: a shell (io.popen) started with libtsan
# preloaded crashes on this system, so busted itself is not preloaded there.
TSAN_SPECS = spec/thread_spec.lua spec/thread_cancel_spec.lua
TSAN_PROCESS_SPECS = spec/thread_close_spec.lua
# TSAN_HOST_SPECS run C hosts linked with a TSan build of libloom.
TSAN_HOST_SPECS = spec/remote_spec.lua spec/examples_c_spec.lua
TSAN_ENV = env LD_PRELOAD=$$(gcc -print-file-name=libtsan.so) \
  TSAN_OPTIONS=halt_on_error=1:exitcode=66:suppressions=$(CURDIR)/spec/tsan.supp

tsan:
	LOOM_BUILD_DIR=build-tsan BUILD_TYPE=Debug LOOM_CMAKE_FLAGS=-DLOOM_TSAN=ON \
	  LOOM_TEST_PREFIX="$(TSAN_ENV)" bash .ci/setup test $(TSAN_SPECS)
	LOOM_BUILD_DIR=build-tsan BUILD_TYPE=Debug LOOM_CMAKE_FLAGS=-DLOOM_TSAN=ON \
	  LOOM_CHILD_PREFIX="$(TSAN_ENV)" bash .ci/setup test $(TSAN_PROCESS_SPECS)
	LOOM_BUILD_DIR=build-tsan BUILD_TYPE=Debug LOOM_CMAKE_FLAGS=-DLOOM_TSAN=ON \
	  LOOM_TEST_PREFIX="env TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1" \
	  LOOM_CHILD_PREFIX="$(TSAN_ENV)" bash .ci/setup test $(TSAN_HOST_SPECS)

# Lint: luacheck (.luacheckrc), cppcheck over csrc/ (.ci/cppcheck.supp
# lists each suppression with its reason) and format-check: csrc/ is
# formatted with .clang-format (`make format`), and CI fails on a file that
# is not. LOOM_FORMAT_CHECK=0 skips the check (e.g. with another
# clang-format version than Debian 12's 14, which may lay out differently).
LOOM_FORMAT_CHECK ?= 1
C_FILES = $(wildcard csrc/*.c csrc/*.h)
LUA_INC ?= $(shell pkg-config --cflags-only-I lua5.4 2>/dev/null)

lint: lint-lua lint-c $(if $(filter 1,$(LOOM_FORMAT_CHECK)),format-check)

lint-lua:
	command -v luacheck >/dev/null || apt-get install -y -qq lua-check
	luacheck --codes -q lua spec examples bench tools

# cppcheck sees lua.h (so Lua's macros are understood) but not the system
# or libuv headers; the defines describe the configurations we build:
# release, and debug with LOOM_ASSERT checked.
CPPCHECK = cppcheck --enable=warning,style,performance,portability \
  --std=c99 --quiet --inline-suppr --error-exitcode=1 \
  --suppressions-list=.ci/cppcheck.supp \
  -D__GNUC__ -D__linux__ -DLLONG_MAX=9223372036854775807LL \
  -I csrc $(or $(LUA_INC),-I/usr/include/lua5.4)

lint-c:
	command -v cppcheck >/dev/null || apt-get install -y -qq cppcheck
	$(CPPCHECK) csrc/
	$(CPPCHECK) -DLOOM_DEBUG csrc/

format:
	command -v clang-format >/dev/null || apt-get install -y -qq clang-format
	clang-format -i $(C_FILES)

format-check:
	command -v clang-format >/dev/null || apt-get install -y -qq clang-format
	clang-format --dry-run --Werror $(C_FILES)

bench:
	bash bench/run.sh

# Instructions per spawn and per switch (total and by function) and bytes
# per parked task split into task and coroutine: the numbers of
# bench/results/core-before.md.
bench-core: build
	bash bench/callgrind.sh
	bash bench/core/callgrind_split.sh
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
	  lua5.4 bench/core/mem_split.lua
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
	  lua5.4 bench/core/group_small.lua
	bash bench/core/ctx_callgrind.sh

# Bare-Lua floors of the targets (no loom needed): wall-clock medians of 5
# interleaved rounds against Node.js, luv and C on libuv, then instructions
# per operation (callgrind); ~2 minutes. Numbers: bench/results/floors.md.
bench-floor:
	bash bench/core/floors.sh
	bash bench/core/floor.sh
# The version is the one in csrc/loom.h; release-check fails when loom's
# other version strings disagree with it.
VERSION := $(shell sed -n 's/^\#define LOOM_VERSION "\(.*\)"/\1/p' csrc/loom.h)
# Where users fetch loom from (written into the committed rockspecs). The
# public URL is not settled: override it with `make rockspecs PUBLIC_URL=...`.
PUBLIC_URL ?= git+https://github.com/loom-lua/loom.git
# `make rock` packs the source rock from REPO_URL at TAG (default: this
# checkout at tag vVERSION) into ROCK_DIR.
REPO_URL ?= git+file://$(CURDIR)
TAG ?= v$(VERSION)
ROCK_DIR ?= dist

# Regenerate the committed rockspecs (scm from branch main, VERSION from its tag).
rockspecs:
	lua5.4 tools/rockspec.lua scm $(PUBLIC_URL) main rockspec
	lua5.4 tools/rockspec.lua $(VERSION) $(PUBLIC_URL) v$(VERSION) rockspec

# loom-VERSION-1.src.rock: install it offline with
#   luarocks --lua-version=5.4 install loom-VERSION-1.src.rock
rock:
	@case "$(REPO_URL)" in git+file://$(CURDIR)) \
	  git rev-parse -q --verify "$(TAG)^{commit}" >/dev/null || { \
	    echo "make rock: no tag or branch $(TAG) in this checkout (git tag $(TAG)," \
	      "or pass TAG=<branch or tag> / REPO_URL=<url>)" >&2; exit 1; } ;; esac
	mkdir -p $(ROCK_DIR)
	lua5.4 tools/rockspec.lua $(VERSION) "$(REPO_URL)" "$(TAG)" $(ROCK_DIR)
	cd $(ROCK_DIR) && rm -f loom-$(VERSION)-1.src.rock && \
	  luarocks --lua-version=5.4 pack loom-$(VERSION)-1.rockspec
	@echo "packed $(ROCK_DIR)/loom-$(VERSION)-1.src.rock"

# Fails when loom._VERSION, LOOM_VERSION, the rockspecs and CHANGELOG.md
# disagree.
release-check: build
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
	  lua5.4 tools/release_check.lua

# Fails when a public name has no entry in docs/api.md or no stub in types/,
# when a stub names something that does not exist, and when a doc links
# outside the repository.
docs-check: build
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
	  lua5.4 tools/docs_check.lua
# The host-driven runtime: idle loom.step (Lua and C), 10,000 NPC tasks vs a
# coroutine array, allocations per frame (a counting allocator), step times
# at 60 FPS; writes bench/results/embedding.md.
bench-embed: build
	mkdir -p bench/results bench/out
	cc -O2 -Wall -Wextra -o bench/out/step_c bench/embed/step_c.c -Icsrc \
	  $$(pkg-config --cflags lua5.4 libuv) build/loom/core.so \
	  -Wl,-rpath,$(CURDIR)/build/loom $$(pkg-config --libs lua5.4)
	{ LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
	    lua5.4 bench/embed/step_bench.lua && \
	  bench/out/step_c "./lua/?.lua;./lua/?/init.lua"; } \
	  | tee bench/results/embedding.md

# Processes: spawn rate and pipe throughput against asyncio, Trio, Node.js.
bench-process:
	bash bench/process/run.sh

# The deadline heap: W4's cost per sleeping task under cachegrind (all
# deadlines in the heap at once, bench/heap/w4_virtual.lua), W4's wall time
# without waiting, and W4's phases (spawn, first park, wakes).
bench-heap: build
	bash bench/heap/w4_cachegrind.sh
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
	  lua5.4 bench/heap/w4_virtual.lua
	LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
	  lua5.4 bench/heap/w4_phases.lua

# Worker threads: round trip against AnyIO and Node.js, CPU-bound speed-up;
# writes bench/results/threads.md.
bench-threads:
	bash bench/threads/run.sh

# Files, UDP and TLS against Node.js, Python and C (bench/io/run.sh).
bench-io:
	bash bench/io/run.sh

# The remote mailbox: posts per second from 1, 2 and 4 threads into a
# blocking loom.run, and the wake-up latency of one post; writes
# bench/results/remote.md.
bench-remote: build
	mkdir -p bench/results
	{ echo "## Remote mailbox (loom_remote_post)"; echo; \
	  echo "Measured with \`make bench-remote\` (spec/hosts/remote_host.c) on a"; \
	  echo "shared 2-core machine: other jobs were running, take the numbers as rough."; \
	  echo; echo "Throughput: threads posting as fast as they can, each post run by a"; \
	  echo "blocking \`loom.run\` (malloc, mutex, lua_pcall per post)."; echo; \
	  echo "| threads | posts | seconds | posts/s | per post |"; \
	  echo "|---|---|---|---|---|"; \
	  for t in 1 2 4; do build/hosts/remote_host bench 250000 $$t; done; \
	  echo; echo "Wake-up latency: one post at a time into a \`loom.run\` asleep in its"; \
	  echo "poll, from \`loom_remote_post\` to the post running."; echo; \
	  echo "| posts | median | p99 | max |"; echo "|---|---|---|---|"; \
	  build/hosts/remote_host latency 2000; } | tee bench/results/remote.md

# examples/host_60fps with a 2 ms budget per step: the distribution of the
# game runtime's step times over its 120 frames (5 runs); writes
# bench/results/host_60fps.md.
bench-host60: build
	mkdir -p bench/results
	{ echo "## examples/host_60fps: step times"; echo; \
	  echo "\`make bench-host60\`: the example's game runtime (a level of 106 tasks, 100"; \
	  echo "of them on \`next_frame\`, 64 resumes and 2 ms per step) over 120 frames,"; \
	  echo "five runs. Shared 2-core machine, other jobs running: rough numbers."; \
	  echo; echo "| frames | budget | median | p99 | max |"; \
	  echo "|---|---|---|---|---|"; \
	  for i in 1 2 3 4 5; do \
	    build/hosts/host_60fps examples/host_60fps.lua --times 2>&1 >/dev/null; \
	  done; } | tee bench/results/host_60fps.md

clean:
	rm -rf build build-asan build-tsan build-rel bench/out dist
