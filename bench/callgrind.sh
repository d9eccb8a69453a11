#!/usr/bin/env bash
# Instructions per spawn (W1) and per switch (W3) of loom, counted by
# valgrind's callgrind, which is steady where wall time is not.
# Difference method: run each script at N and at 2N; the instruction delta
# divided by N cancels the interpreter's start-up and the fixed costs.
#
#   bash bench/callgrind.sh            N = 10000 spawns, M = 5000 round trips
#   N=20000 M=10000 bash bench/callgrind.sh
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=$BENCH/out
N=${N:-10000}
M=${M:-5000}

bash "$BENCH/setup.sh"
if [ -z "${LOOM_CPATH:-}" ]; then
  (cd "$ROOT" && LOOM_BUILD_DIR=bench/out/build BUILD_TYPE=Release bash .ci/setup build) \
    >"$OUT/loom-build.log" 2>&1 || { echo "callgrind: loom does not build (bench/out/loom-build.log)" >&2; exit 1; }
fi
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="${LOOM_CPATH:-$OUT/build/?.so};;"

instructions() { # script n -> total instructions (Ir) of one run
  local file=$OUT/callgrind.out
  valgrind --tool=callgrind --callgrind-out-file="$file" lua5.4 "$BENCH/$1" "$2" >/dev/null 2>"$OUT/callgrind.err" \
    || { echo "callgrind: $1 $2 failed:" >&2; tail -n 5 "$OUT/callgrind.err" >&2; return 1; }
  awk '/^(summary|totals):/ { print $2; exit }' "$file"
}

per_op() { # label script n ops-per-n
  local a b
  a=$(instructions "$2" "$3")
  b=$(instructions "$2" $(($3 * 2)))
  awk -v l="$1" -v a="$a" -v b="$b" -v n="$3" -v k="$4" \
    'BEGIN { printf "%-34s %12.0f instructions  (Ir %d at N=%d, %d at 2N)\n", l, (b - a) / (n * k), a, n, b }'
}

echo "loom $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'), Release build, lua5.4, valgrind $(valgrind --version | sed 's/valgrind-//')"
per_op "W1 per spawn+join (trivial task)" w1_spawn/loom.bench.lua "$N" 1
per_op "W2 per spawn+sleep(0)+join" w2_sleep0/loom.bench.lua "$N" 1
per_op "W3 per switch (events)" w3_event/loom.bench.lua "$M" 2
per_op "W3 per switch (channel(0))" w3_channel/loom.bench.lua "$M" 2
