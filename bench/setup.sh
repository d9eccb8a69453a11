#!/usr/bin/env bash
# Installs what the benchmark suite needs (only what is missing) and builds
# the C helpers into bench/out/. Idempotent; safe to run before every bench run.
set -euo pipefail
cd "$(dirname "$0")"
BENCH=$PWD

# Debian packages: the peers, the C floor, the chart, callgrind.
PKGS="lua5.4 liblua5.4-dev libuv1-dev pkg-config gcc lua-luv lua-cqueues
      python3 python3-uvloop python3-trio python3-anyio gnuplot-nox valgrind"

missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# Node.js: any `node` on PATH will do (Debian's nodejs package otherwise).
command -v node >/dev/null 2>&1 || missing="$missing nodejs"

if [ -n "$missing" ]; then
  echo "bench/setup: installing$missing" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# C helpers: rebuilt only when the source is newer than the binary.
mkdir -p out
CFLAGS="-O2 -Wall -Wextra"
UV_FLAGS=$(pkg-config --cflags --libs libuv)
build() { # out-file source extra-flags...
  local dst=$1 src=$2
  shift 2
  if [ ! -e "$dst" ] || [ "$src" -nt "$dst" ] || [ lib/bench.h -nt "$dst" ]; then
    # shellcheck disable=SC2086
    gcc $CFLAGS -o "$dst" "$src" "$@"
  fi
}
build out/benchclock.so lib/benchclock.c -shared -fPIC -I/usr/include/lua5.4
for w in w4_timers w6_echo w7_cancel; do
  # shellcheck disable=SC2086
  build "out/${w}_c" "$w/c_libuv.c" -Ilib $UV_FLAGS
done
echo "bench/setup: ok ($BENCH/out)" >&2
