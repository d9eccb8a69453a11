#!/usr/bin/env bash
# Instructions per spawn+join of a trivial task whose spawner inherited a
# context of 8 keys it never looked at (bench/core/ctx_spawn.bench.lua),
# by callgrind's difference method (N and 2N spawns), like bench/callgrind.sh.
#
#   bash bench/core/ctx_callgrind.sh            N = 10000
#   LOOM_CPATH=/path/to/build/?.so bash bench/core/ctx_callgrind.sh
set -euo pipefail
CORE=$(cd "$(dirname "$0")" && pwd)
BENCH=$(dirname "$CORE")
ROOT=$(dirname "$BENCH")
OUT=$BENCH/out
N=${N:-10000}
bash "$BENCH/setup.sh" >/dev/null
if [ -z "${LOOM_CPATH:-}" ]; then
  (cd "$ROOT" && LOOM_BUILD_DIR=bench/out/build BUILD_TYPE=Release bash .ci/setup build) \
    >"$OUT/loom-build.log" 2>&1 || { echo "ctx_callgrind: loom does not build" >&2; exit 1; }
fi
export LUA_PATH="${LOOM_LUA_PATH:-$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;};"
export LUA_CPATH="${LOOM_CPATH:-$OUT/build/?.so};;"
ir() {
  valgrind --tool=callgrind --callgrind-out-file="$OUT/ctx.cg.out" \
    lua5.4 "$CORE/ctx_spawn.bench.lua" "$1" >/dev/null 2>"$OUT/ctx.cg.err"
  awk '/^(summary|totals):/ { print $2; exit }' "$OUT/ctx.cg.out"
}
a=$(ir "$N")
b=$(ir $((N * 2)))
awk -v a="$a" -v b="$b" -v n="$N" 'BEGIN { printf "spawn+join, inherited 8-key context  %8.0f instructions  (Ir %d at N=%d, %d at 2N)\n", (b - a) / n, a, n, b }'
