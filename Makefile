# Thin wrapper over .ci/setup (which installs what is missing on Debian 12).
.PHONY: all build demo test valgrind asan tsan lint bench bench-embed bench-remote bench-host60 clean

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

# ThreadSanitizer over the specs whose C hosts run threads (TSAN_SPECS):
# libloom and the hosts are instrumented (LOOM_TSAN); loom/core.so is not,
# since the interpreter running busted is not.
TSAN_SPECS = spec/remote_spec.lua spec/examples_c_spec.lua
tsan:
	LOOM_BUILD_DIR=build-tsan BUILD_TYPE=Debug LOOM_CMAKE_FLAGS=-DLOOM_TSAN=ON \
	  LOOM_TEST_PREFIX="env TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1" \
	  bash .ci/setup test $(TSAN_SPECS)

lint:
	command -v luacheck >/dev/null || apt-get install -y -qq lua-check
	luacheck --codes lua spec examples bench

bench:
	bash bench/run.sh

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
	rm -rf build build-asan build-tsan build-rel bench/out
