#!/usr/bin/env bash
# Process benchmarks: 1,000 runs of `true` with 16 at a time (processes/s)
# and 200 MB through a `cat` child (MB/s), loom against Python asyncio, Trio
# and Node.js child_process, interleaved (every implementation once per
# round), REPEAT rounds. Prints the lines and writes bench/results/process.md
# with the median of each.
#   bash bench/process/run.sh            (REPEAT=5, N=1000, C=16, MB=200)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
REPEAT=${REPEAT:-5} N=${N:-1000} C=${C:-16} MB=${MB:-200}
OUT=$ROOT/bench/out/process
mkdir -p "$OUT" "$ROOT/bench/results"
(cd "$ROOT" && LOOM_BUILD_DIR=bench/out/build BUILD_TYPE=Release \
  bash .ci/setup build) >"$OUT/build.log" 2>&1
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="$ROOT/bench/out/build/?.so;;"
export PYTHONDONTWRITEBYTECODE=1
LOG=$OUT/lines.txt
: >"$LOG"
for _ in $(seq "$REPEAT"); do
  for w in "spawn $N $C" "cat $MB"; do
    # shellcheck disable=SC2086
    {
      lua5.4 "$HERE/loom.lua" $w
      /usr/bin/python3 "$HERE/asyncio_bench.py" $w
      /usr/bin/python3 "$HERE/trio_bench.py" $w
      node "$HERE/node_bench.js" $w
    } | tee -a "$LOG"
  done
done
/usr/bin/python3 - "$LOG" "$ROOT/bench/results/process.md" \
  "$REPEAT" "$N" "$C" "$MB" <<'PY'
import statistics, sys, os
log, dest, rep, n, c, mb = sys.argv[1:]
rates = {}
for line in open(log):
    w, impl, _, _, rate = line.split()
    rates.setdefault((w, impl), []).append(float(rate))
impls = ["loom", "asyncio", "trio", "node"]
names = {"loom": "loom", "asyncio": "Python asyncio", "trio": "Trio",
         "node": "Node.js child_process"}
out = ["## Processes", "",
       f"Median of {rep} interleaved rounds (`make bench-process`). "
       f"Machine: {os.cpu_count()} cores, shared with other jobs while "
       "measured, so the numbers are noisy; compare the rows, not the "
       "absolute values.", "",
       f"| implementation | {n} runs of `true`, {c} at a time (processes/s) "
       f"| {mb} MB through `cat` (MB/s) |", "|---|---:|---:|"]
for i in impls:
    s = statistics.median(rates.get(("spawn", i), [0]))
    k = statistics.median(rates.get(("cat", i), [0]))
    out.append(f"| {names[i]} | {s:.0f} | {k:.0f} |")
open(dest, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
