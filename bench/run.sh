#!/usr/bin/env bash
# The loom benchmark suite: seven workloads, loom against the runtimes a user
# would pick instead, all interleaved in one pass, each run REPEAT times.
#
#   bash bench/run.sh                 everything (about 4-5 minutes on 2 cores)
#   bash bench/run.sh W1 W3           a subset (also BENCH_WORKLOADS="W1 W3")
#   QUICK=1 bash bench/run.sh         small N, one repetition: a smoke test
#
# Environment: REPEAT (3; 1 when QUICK), BENCH_IMPLS="loom node ..." (a subset
# of implementations), BENCH_TIMEOUT (seconds per run, 60), BENCH_BUDGET
# (seconds for all runs, 540: runs past it are reported as skipped),
# LOOM_CPATH (use this build of loom.core instead of building one).
# Prints the tables and writes bench/RESULTS.md and bench/results.png.
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
OUT=$BENCH/out
PY=/usr/bin/python3 # Debian's: its python3-* packages are not seen by other pythons
export PYTHONDONTWRITEBYTECODE=1
cd "$BENCH"

QUICK=${QUICK:-0}
[ "$QUICK" = 0 ] && REPEAT=${REPEAT:-3} || REPEAT=${REPEAT:-1}
TIMEOUT=${BENCH_TIMEOUT:-60}
BUDGET=${BENCH_BUDGET:-540}
WANT=" ${*:-${BENCH_WORKLOADS:-W1 W2 W3 W4 W5 W6 W7}} "
IMPLS=" ${BENCH_IMPLS:-loom c-libuv luv-cb luv-co cqueues node asyncio uvloop trio anyio} "

bash "$BENCH/setup.sh"
mkdir -p "$OUT"

# loom: a Release build of our own, so a concurrent developer build is not
# disturbed; if it does not build or load, the loom rows say "pending".
LOOM_STATE=ok
if [ -n "${LOOM_CPATH:-}" ]; then
  LOOM_CPATH_USED=$LOOM_CPATH
else
  LOOM_CPATH_USED="$OUT/build/?.so"
  if ! (cd "$ROOT" && LOOM_BUILD_DIR=bench/out/build BUILD_TYPE=Release \
        bash .ci/setup build) >"$OUT/loom-build.log" 2>&1; then
    LOOM_STATE="pending: loom.core does not build (bench/out/loom-build.log)"
  fi
fi
LOOM_ENV=(env "LUA_PATH=$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" "LUA_CPATH=$LOOM_CPATH_USED;;")
if [ "$LOOM_STATE" = ok ] && ! "${LOOM_ENV[@]}" lua5.4 -e 'require("loom")' 2>"$OUT/loom-load.log"; then
  LOOM_STATE="pending: require('loom') fails ($(head -n 1 "$OUT/loom-load.log"))"
fi

# Rows: id, directory, Python divisor, N (full, quick), implementations. W6: N is round trips
# per client (50 clients). Python peers run at N / PYDIV to keep the whole
# suite under 10 minutes; the table shows every row's real N.
ROWS="
W1-100k    w1_spawn   1  100000  10000  loom luv-cb luv-co cqueues node asyncio uvloop trio anyio
W1-1M      w1_spawn   1  1000000 100000 loom luv-cb luv-co cqueues node
W2         w2_sleep0  5  100000  10000  loom luv-cb luv-co cqueues node asyncio uvloop trio anyio
W3-event   w3_event   10 1000000 50000  loom luv-cb luv-co cqueues node asyncio uvloop trio anyio
W3-channel w3_channel 10 1000000 50000  loom luv-co asyncio uvloop trio anyio
W4         w4_timers  5  100000  10000  loom c-libuv luv-cb luv-co cqueues node asyncio uvloop trio anyio
W5         w5_idle    5  100000  10000  loom luv-co cqueues node asyncio uvloop trio anyio
W6         w6_echo    5  2000    200    loom c-libuv luv-cb luv-co cqueues node asyncio uvloop trio anyio
W7         w7_cancel  5  100000  10000  loom c-libuv luv-cb luv-co cqueues node asyncio uvloop trio anyio
"

command_for() { # impl dir n -> the command line, one word per line
  local impl=$1 dir=$2 n=$3
  local -a args=("$n")
  [ "$dir" = w6_echo ] && args=("$n" 50) # round trips per client, clients
  case $impl in
    loom)    printf '%s\n' "${LOOM_ENV[@]}" lua5.4 "$dir/loom.bench.lua" "${args[@]}" ;;
    luv-cb)  printf '%s\n' lua5.4 "$dir/luv_cb.bench.lua" "${args[@]}" ;;
    luv-co)  printf '%s\n' lua5.4 "$dir/luv_co.bench.lua" "${args[@]}" ;;
    cqueues) printf '%s\n' lua5.4 "$dir/cqueues.bench.lua" "${args[@]}" ;;
    node)    printf '%s\n' node --expose-gc "$dir/node.bench.js" "${args[@]}" ;;
    asyncio) printf '%s\n' "$PY" "$dir/asyncio.bench.py" "${args[@]}" ;;
    uvloop)  printf '%s\n' "$PY" "$dir/asyncio.bench.py" "${args[@]}" uvloop ;;
    trio)    printf '%s\n' "$PY" "$dir/trio.bench.py" "${args[@]}" ;;
    anyio)   printf '%s\n' "$PY" "$dir/anyio.bench.py" "${args[@]}" ;;
    c-libuv) printf '%s\n' "$OUT/${dir}_c" "${args[@]}" ;;
  esac
}

# The job list: "row dir impl n", in table order.
JOBS=()
while read -r row dir pydiv full quick impls; do
  [ -z "$row" ] && continue
  [[ "$WANT" == *" ${row%%-*} "* || "$WANT" == *" $row "* ]] || continue
  for impl in $impls; do
    [[ "$IMPLS" == *" $impl "* ]] || continue
    n=$full
    [ "$QUICK" != 0 ] && n=$quick
    case $impl in asyncio | uvloop | trio | anyio) n=$((n / pydiv)) ;; esac
    JOBS+=("$row $dir $impl $n")
  done
done <<<"$ROWS"
[ ${#JOBS[@]} -gt 0 ] || { echo "bench: nothing selected (workloads:$WANT)" >&2; exit 2; }

# Versions of everything measured.
{
  echo "loom: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- csrc lua 2>/dev/null || echo '+local changes'), Release build, $LOOM_STATE"
  echo "lua: $(lua5.4 -v 2>&1 | cut -d' ' -f1-2)"
  echo "libuv: $(pkg-config --modversion libuv) (C floor and loom)"
  echo "luv: $(lua5.4 -e 'print(require("luv").version_string())') (Debian lua-luv $(dpkg-query -W -f='${Version}' lua-luv), built for Lua 5.4)"
  echo "cqueues: $(lua5.4 -e 'print(require("cqueues").VERSION)') (Debian lua-cqueues $(dpkg-query -W -f='${Version}' lua-cqueues))"
  echo "node: $(node --version)"
  echo "python: $("$PY" --version 2>&1 | cut -d' ' -f2) ($PY)"
  echo "uvloop: $("$PY" -c 'import uvloop; print(uvloop.__version__)')"
  echo "trio: $("$PY" -c 'import trio; print(trio.__version__)')"
  echo "anyio: $("$PY" -c 'from importlib.metadata import version; print(version("anyio"))') (asyncio backend; Debian's is 3.x, AnyIO 4 semantics differ)"
  echo "gcc: $(gcc -dumpfullversion)"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r), load average before the pass: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/versions.txt"

# One pass: every job once per repetition, interleaved, each under timeout.
RAW=$OUT/raw.tsv
: >"$RAW"
START=$SECONDS
TOTAL=$((${#JOBS[@]} * REPEAT))
i=0
echo "bench: ${#JOBS[@]} runs x $REPEAT repetitions (QUICK=$QUICK, timeout ${TIMEOUT}s, budget ${BUDGET}s)" >&2
for rep in $(seq "$REPEAT"); do
  [ -t 2 ] || echo "bench: repetition $rep of $REPEAT ($((SECONDS - START))s so far)" >&2
  for job in "${JOBS[@]}"; do
    read -r row dir impl n <<<"$job"
    i=$((i + 1))
    if [ "$impl" = loom ] && [ "$LOOM_STATE" != ok ]; then
      printf '%s\t%s\t%s\t%s\t%s\n' "$row" "$impl" "$rep" pending "$LOOM_STATE" >>"$RAW"
      continue
    fi
    if [ $((SECONDS - START)) -ge "$BUDGET" ]; then
      printf '%s\t%s\t%s\t%s\t%s\n' "$row" "$impl" "$rep" skipped "time budget (${BUDGET}s) used up" >>"$RAW"
      continue
    fi
    mapfile -t cmd < <(command_for "$impl" "$dir" "$n")
    [ -t 2 ] && printf '\rbench: [%d/%d] %-10s %-8s N=%-8s' "$i" "$TOTAL" "$row" "$impl" "$n" >&2
    set +e
    line=$(timeout -k 5 "$TIMEOUT" "${cmd[@]}" 2>"$OUT/last.err" | tail -n 1)
    rc=$? # pipefail: the benchmark's (or timeout's) status
    set -e
    if [ "$rc" -eq 0 ] && [ -n "$line" ]; then
      printf '%s\t%s\t%s\t%s\t%s\n' "$row" "$impl" "$rep" ok "$line" >>"$RAW"
    else
      if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then why="timeout after ${TIMEOUT}s"
      else why="exit $rc: $(grep -v '^\s*$' "$OUT/last.err" | head -n 1 | cut -c1-160)"; fi
      status=fail
      [ "$impl" = loom ] && status=pending # loom is still growing its features
      printf '%s\t%s\t%s\t%s\t%s\n' "$row" "$impl" "$rep" "$status" "$why" >>"$RAW"
      cp "$OUT/last.err" "$OUT/err-$row-$impl-$rep.txt"
    fi
  done
done
[ -t 2 ] && printf '\r%60s\r' "" >&2
echo "bench: $TOTAL runs done in $((SECONDS - START))s" >&2

rm -f "$OUT/chart.dat"
"$PY" "$BENCH/lib/report.py" "$RAW" "$OUT/versions.txt" "$BENCH/RESULTS.md" "$OUT" \
  "QUICK=$QUICK REPEAT=$REPEAT"
if command -v gnuplot >/dev/null && [ -s "$OUT/chart.dat" ]; then
  if gnuplot "$OUT/chart.gp" 2>"$OUT/gnuplot.log"; then
    echo "bench: wrote bench/RESULTS.md and bench/results.png" >&2
  else
    echo "bench: wrote bench/RESULTS.md; gnuplot failed (bench/out/gnuplot.log)" >&2
  fi
else
  echo "bench: wrote bench/RESULTS.md (no chart: nothing to compare with loom)" >&2
fi
