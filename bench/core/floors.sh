#!/bin/bash
# Bare-Lua floors in wall time: every case of bench/core/floors.lua and the
# peer each target names (Node.js W1, luv callbacks W3, C on libuv W4 and
# W7), run REPEAT times (5) interleaved (every case once per round, in the
# same order each round), then a table of medians. ~1.5 minutes on 2 cores.
# Raw lines go to bench/out/floors-raw.txt. Writes nothing else.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=$(dirname "$here")
REPEAT=${REPEAT:-5}
bash "$bench/setup.sh"
src=$here/floorlib.c
dst=$bench/out/floorlib.so
if [ ! -e "$dst" ] || [ "$src" -nt "$dst" ]; then
  # shellcheck disable=SC2046
  gcc -O2 -Wall -Wextra -shared -fPIC -o "$dst" "$src" \
    $(pkg-config --cflags lua5.4) $(pkg-config --cflags --libs libuv)
fi
if [ ! -e "$bench/out/timer_burst" ] || [ "$here/timer_burst.c" -nt "$bench/out/timer_burst" ]; then
  # shellcheck disable=SC2046
  gcc -O2 -Wall -Wextra -o "$bench/out/timer_burst" "$here/timer_burst.c" -I"$bench/lib" \
    $(pkg-config --cflags --libs libuv)
fi
F="lua5.4 $here/floors.lua"
# loom itself and cqueues (the W1 target's peer), from the bench build of
# `make bench` (bench/out/build) when there is one
root=$(dirname "$bench")
L="lua5.4"
if [ -e "$bench/out/build/loom/core.so" ]; then
  L="env LUA_PATH=$root/lua/?.lua;$root/lua/?/init.lua;; LUA_CPATH=$bench/out/build/?.so;; lua5.4"
fi
runs=(
  "W1-100k|$F w1-create 100000" "W1-100k|$F w1-pool 100000"
  "W1-100k|$F w1-pool-table 100000" "W1-100k|$F w1-pool-ud 100000"
  "W1-100k|$F w1-c-pool 100000" "W1-100k|$F w1-c-pool-ud 100000" "W1-100k|$F w1-contract 100000" "W1-100k|$F w1-call 100000"
  "W1-100k|node $bench/w1_spawn/node.bench.js 100000"
  "W1-100k|lua5.4 $bench/w1_spawn/cqueues.bench.lua 100000" "W1-100k|$L $bench/w1_spawn/loom.bench.lua 100000"
  "W1-1M|$F w1-create 1000000" "W1-1M|$F w1-pool 1000000"
  "W1-1M|$F w1-pool-table 1000000" "W1-1M|$F w1-pool-ud 1000000"
  "W1-1M|$F w1-c-pool 1000000" "W1-1M|$F w1-c-pool-ud 1000000" "W1-1M|$F w1-contract 1000000"
  "W1-1M|node $bench/w1_spawn/node.bench.js 1000000"
  "W1-1M|lua5.4 $bench/w1_spawn/cqueues.bench.lua 1000000" "W1-1M|$L $bench/w1_spawn/loom.bench.lua 1000000"
  "W2|$F w2-c" "W2|$F w2-c-ud" "W2|lua5.4 $bench/w2_sleep0/cqueues.bench.lua 100000"
  "W3|$F w3-raw" "W3|$F w3-c" "W3|$F w3-c-table" "W3|$F w3-c-ud" "W3|$F w3-c-script" "W3|$F w3-contract"
  "W3|$F w3-sched" "W3|lua5.4 $bench/w3_event/luv_cb.bench.lua 1000000" "W3|$L $bench/w3_event/loom.bench.lua 1000000"
  "W4|$F w4-c-cached" "W4|$F w4-c-fresh" "W4|$F w4-c-nogc"
  "W4|$F w4-heap-cached" "W4|$F w4-heap-fresh" "W4|$F w4-heap-gen"
  "W4|$F w4-wheel-cached" "W4|$F w4-wheel-fresh" "W4|$F w4-luv"
  "W4|$F w4-resume-seq" "W4|$F w4-resume-sorted" "W4|$bench/out/w4_timers_c 100000"
  "W4|$bench/out/timer_burst 100000"
  "W5|$F w5-bare" "W5|$F w5-pcall" "W5|$F w5-callk" "W5|$F w5-handle"
  "W7|$F w7-raise" "W7|$F w7-raise-gc" "W7|$F w7-close"
  "W7|$bench/out/w7_cancel_c 100000"
)
raw=$bench/out/floors-raw.txt
: >"$raw"
echo "floors: $REPEAT rounds of ${#runs[@]} runs; load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ((r = 1; r <= REPEAT; r++)); do
  for run in "${runs[@]}"; do
    row=${run%%|*}
    # shellcheck disable=SC2086
    line=$(${run#*|}) || { echo "floors: failed: ${run#*|}" >&2; exit 1; }
    echo "$row $line" >>"$raw"
  done
  echo "floors: round $r done" >&2
done
echo "floors: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
lua5.4 "$here/floors_table.lua" <"$raw"
