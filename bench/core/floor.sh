#!/bin/bash
# Bare-Lua floors for W1 (bench/results/core-redesign.md): instructions per
# task of a coroutine created and resumed to its end, and of one round trip
# through a reused coroutine, by the (Ir(2N) - Ir(N)) / N method of
# bench/callgrind.sh. Needs valgrind and lua5.4; ~10 s.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
N=${N:-10000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ir() {
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg" lua5.4 "$1" "$2" 2>&1 \
    | sed -n 's/.*refs: *\([0-9,]*\).*/\1/p' | tr -d ,
}
for s in floor_create floor_pool; do
  a=$(ir "$here/$s.lua" "$N")
  b=$(ir "$here/$s.lua" $((2 * N)))
  echo "$s: $(( (b - a) / N )) instructions per task"
done
