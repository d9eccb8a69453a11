# Thin wrapper over .ci/setup (which installs what is missing on Debian 12).
.PHONY: all build demo test valgrind asan lint lint-lua lint-c format \
  format-check bench bench-core clean

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

# Lint: luacheck (.luacheckrc), cppcheck over csrc/ (.ci/cppcheck.supp
# lists each suppression with its reason) and, once csrc/ has been formatted
# with `make format`, format-check. Set LOOM_FORMAT_CHECK ?= 1 below after
# that one-time reformat; until then formatting is not enforced.
LOOM_FORMAT_CHECK ?= 0
C_FILES = $(wildcard csrc/*.c csrc/*.h)
LUA_INC ?= $(shell pkg-config --cflags-only-I lua5.4 2>/dev/null)

lint: lint-lua lint-c $(if $(filter 1,$(LOOM_FORMAT_CHECK)),format-check)

lint-lua:
	command -v luacheck >/dev/null || apt-get install -y -qq lua-check
	luacheck --codes -q lua spec examples bench

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

clean:
	rm -rf build build-asan build-rel bench/out
