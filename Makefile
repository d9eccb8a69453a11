# Thin wrapper over .ci/setup (which installs what is missing on Debian 12).
.PHONY: all build demo test valgrind asan lint bench clean rock rockspecs \
  release-check docs-check

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

lint:
	command -v luacheck >/dev/null || apt-get install -y -qq lua-check
	luacheck --codes lua spec examples bench

bench:
	bash bench/run.sh

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

clean:
	rm -rf build build-asan build-rel bench/out dist
