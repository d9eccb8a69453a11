#!/bin/bash
# Bare-Lua floors (bench/results/core-redesign.md, bench/results/floors.md):
# instructions per operation by the (Ir(2N) - Ir(N)) / N method of
# bench/callgrind.sh. First the two W1 floors (a coroutine created and
# resumed to its end; a round trip through a reused coroutine), then the
# cases of bench/core/floors.lua (their wall times: bench/core/floors.sh).
# Needs valgrind and lua5.4; ~40 s.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=$(dirname "$here")
N=${N:-10000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ir() {
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg" lua5.4 "$@" 2>&1 \
    | sed -n 's/.*refs: *\([0-9,]*\).*/\1/p' | tr -d ,
}
for s in floor_create floor_pool; do
  a=$(ir "$here/$s.lua" "$N")
  b=$(ir "$here/$s.lua" $((2 * N)))
  echo "$s: $(( (b - a) / N )) instructions per task"
done

# The floors.lua cases need bench/out/benchclock.so and floorlib.so.
bash "$bench/setup.sh" 2>/dev/null
if [ ! -e "$bench/out/floorlib.so" ] || [ "$here/floorlib.c" -nt "$bench/out/floorlib.so" ]; then
  # shellcheck disable=SC2046
  gcc -O2 -Wall -Wextra -shared -fPIC -o "$bench/out/floorlib.so" "$here/floorlib.c" \
    $(pkg-config --cflags lua5.4) $(pkg-config --cflags --libs libuv)
fi
# case, what one operation is, operations per unit of N
for c in "w1-create|task (create + resume to end, N queued first)|1" \
         "w1-pool|task (pooled coroutine)|1" \
         "w1-pool-table|task (pooled coroutine + table handle + FIFO)|1" \
         "w1-pool-ud|task (pooled coroutine + userdata handle + FIFO)|1" \
         "w1-c-pool|task (queue and resume in C, pooled coroutine)|1" \
         "w1-c-pool-ud|task (the same + userdata handle holding fn)|1" \
         "w1-contract|task (the W1 script on the least runtime keeping loom's contract, in C)|1" \
         "w2-c-ud|task (C FIFO, a coroutine + userdata handle each, 2 resumes)|1" \
         "w3-raw|switch (coroutine.resume + yield round trip)|1" \
         "w3-c|switch (lua_resume from C + yield)|1" \
         "w3-c-ud|switch (lua_resume from C + yield + fresh userdata)|1" \
         "w3-c-script|switch (lua_resume from C + the W3 script's calls: new event, set, wait)|1" \
         "w3-c-table|switch (lua_resume from C + yield + fresh table)|1" \
         "w3-contract|switch (the W3 script on the least runtime keeping loom's contract, in C)|2" \
         "w3-sched|switch (Lua scheduler, fresh event table per hop)|2" \
         "w7-raise|task (park, then resume to raise out of the coroutine)|1" \
         "w7-raise-gc|task (park, raise, + full collect)|1"; do
  IFS='|' read -r name what per <<<"$c"
  a=$(ir "$here/floors.lua" "$name" "$N")
  b=$(ir "$here/floors.lua" "$name" $((2 * N)))
  echo "floors.lua $name: $(( (b - a) / (N * per) )) instructions per $what"
done
