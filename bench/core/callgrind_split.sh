#!/usr/bin/env bash
# Where the instructions of one spawn->finish (W1) and one switch (W3
# events) go, per function, counted by callgrind with the difference method
# of bench/callgrind.sh: run at N and at 2N, subtract, divide by the number
# of operations. Prints, per workload, the total, the split by binary (Lua,
# loom.core, libc, libuv) and the functions with the largest self cost
# (exclusive instructions) per operation.
#
# /usr/bin/lua5.4 is stripped; the scripts run under bench/core/luahost.c,
# the same Lua 5.4 linked from liblua5.4.a, whose functions have names.
#
#   bash bench/core/callgrind_split.sh         N = 10000 spawns, M = 5000
#   LOOM_CPATH=/path/to/build/?.so bash bench/core/callgrind_split.sh
set -euo pipefail
CORE=$(cd "$(dirname "$0")" && pwd)
BENCH=$(dirname "$CORE")
ROOT=$(dirname "$BENCH")
OUT=$BENCH/out/core
N=${N:-10000}
M=${M:-5000}
TOP=${TOP:-30}
mkdir -p "$OUT"

command -v valgrind >/dev/null || { echo "callgrind_split: valgrind missing" >&2; exit 1; }
if [ -z "${LOOM_CPATH:-}" ]; then
  (cd "$ROOT" && LOOM_BUILD_DIR=bench/out/build BUILD_TYPE=Release bash .ci/setup build) \
    >"$OUT/loom-build.log" 2>&1 || { echo "callgrind_split: loom does not build" >&2; exit 1; }
fi
HOST=$OUT/luahost
gcc -O2 $(pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4) \
  "$CORE/luahost.c" "$(pkg-config --variable=libdir lua5.4 2>/dev/null \
  || echo /usr/lib/x86_64-linux-gnu)/liblua5.4.a" -lm -ldl -Wl,-E -o "$HOST"
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="${LOOM_CPATH:-$BENCH/out/build/?.so};;"

# profile script n -> file with "self_Ir<TAB>function" lines (whole run)
profile() {
  local file=$OUT/cg.$(basename "$(dirname "$1")").$2
  valgrind --tool=callgrind --callgrind-out-file="$file.out" \
    "$HOST" "$BENCH/$1" "$2" >/dev/null 2>"$file.err"
  callgrind_annotate --threshold=100 "$file.out" 2>/dev/null \
    | awk '/^ *[0-9,]+ .*:/ {
        ir = $1; gsub(",", "", ir);
        fn = $0; sub(/^ *[0-9,]+ +(\([^)]*\) +)?/, "", fn);
        obj = fn; sub(/^.* \[/, "", obj); sub(/\]$/, "", obj);
        n = split(obj, parts, "/"); obj = parts[n];
        sub(/ \[[^]]*\]$/, "", fn); sub(/^.*:/, "", fn);
        print ir "\t" fn "\t" obj }' >"$file.fn"
  awk '/^(summary|totals):/ { print $2; exit }' "$file.out" >"$file.total"
  echo "$file"
}

split() { # label script n ops-per-n
  local a b
  a=$(profile "$2" "$3")
  b=$(profile "$2" $(($3 * 2)))
  awk -v l="$1" -v n="$3" -v k="$4" -v ta="$(cat "$a.total")" -v tb="$(cat "$b.total")" \
      -v top="$TOP" -F'\t' '
    FNR == 1 { f++ }
    f == 1 { A[$2] += $1; OA[$3] += $1; next }
    f == 2 { B[$2] += $1; names[$2] = 1; OB[$3] += $1; objs[$3] = 1 }
    END {
      ops = n * k
      printf "%s: %.0f instructions per operation\n", l, (tb - ta) / ops
      printf "  by binary:"
      for (o in objs) if ((OB[o] - OA[o]) / ops >= 5)
        printf "  %s %.0f", o, (OB[o] - OA[o]) / ops
      printf "\n  by function (self):\n"
      for (x in names) D[x] = (B[x] - A[x]) / ops
      for (i = 0; i < top; i++) {
        best = ""; bv = -1e18
        for (x in D) if (D[x] > bv) { bv = D[x]; best = x }
        if (best == "" || bv < 5) break
        printf "  %7.0f  %s\n", bv, best
        delete D[best]
      }
    }' "$a.fn" "$b.fn"
}

echo "self instructions per operation, by function (difference N -> 2N)"
split "W1 spawn+join (trivial task)" w1_spawn/loom.bench.lua "$N" 1
split "W3 switch (events)" w3_event/loom.bench.lua "$M" 2
