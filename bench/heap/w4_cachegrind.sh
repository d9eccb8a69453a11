#!/usr/bin/env bash
# The deadline heap's cost per sleeping task in W4, under cachegrind's cache
# model: whole-program counts at N and 2N random sleeps (W4's delays on the
# autojump clock, bench/heap/w4_virtual.lua, so that all N deadlines are in
# the heap at once however slow valgrind is), per task = (count at 2N -
# count at N) / N, and the heap's own functions.
# Usage: bash bench/heap/w4_cachegrind.sh [N] (default 20000); LOOM_CPATH
# selects the build (default build/?.so). Needs valgrind.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
N=${1:-20000}
CPATH=${LOOM_CPATH:-$ROOT/build/?.so}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
bash "$ROOT/bench/setup.sh" >/dev/null
for n in "$N" $((2 * N)); do
  env "LUA_PATH=$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" "LUA_CPATH=$CPATH;;" \
    valgrind --tool=cachegrind --cache-sim=yes \
    --cachegrind-out-file="$OUT/cg.$n" \
    lua5.4 "$ROOT/bench/heap/w4_virtual.lua" "$n" >/dev/null 2>&1
done
# The raw cachegrind file: "events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw",
# then per function "fn=name" and lines "line Ir I1mr ...", and "summary:".
counts() { # file pattern -> Ir D1mr D1mw DLmr+DLmw (pattern "" = program)
  awk -v pat="$2" '
    /^fn=/ {on = (pat != "" && $0 ~ pat); next}
    /^summary:/ {if (pat == "") {ir = $2; r = $6; w = $9; l = $7 + $10}; next}
    on && /^[0-9]/ {ir += $2; r += $6; w += $9; l += $7 + $10}
    END {printf "%d %d %d %d\n", ir, r, w, l}' "$1"
}
report() { # label pattern
  read -r i1 r1 w1 l1 <<<"$(counts "$OUT/cg.$N" "$2")"
  read -r i2 r2 w2 l2 <<<"$(counts "$OUT/cg.$((2 * N))" "$2")"
  awk -v n="$N" -v lab="$1" -v i="$((i2 - i1))" -v r="$((r2 - r1))" \
    -v w="$((w2 - w1))" -v l="$((l2 - l1))" 'BEGIN {
    printf "%-12s %8.0f instructions, D1 misses %6.1f read + %5.1f write, LL data misses %5.2f per task\n",
      lab, i / n, r / n, w / n, l / n }'
}
report "whole W4" ""
report "heap" "^fn=(loom__heap_|loom__fire_timers|sift_down|sift_up|min4|min_child|place|before)"
