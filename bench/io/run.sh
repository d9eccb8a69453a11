#!/usr/bin/env bash
# bench/io: files, UDP and TLS against their peers (make bench-io).
#   1 GB file read in 64 KiB chunks: loom, Node.js fs.promises, AnyIO
#   UDP echo, 1e5 datagrams (10 clients): loom, C on libuv, uvloop
#   TLS echo, 50 clients x 1,000 round trips: loom, Node.js tls, uvloop+ssl
# Environment: REPEAT (3), FILE_MB (1024), UDP_N (100000), TLS_R (1000),
# TLS_C (50). Prints each run and writes the medians to bench/results/io.md.
set -euo pipefail
IO=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$IO/../.." && pwd)
OUT=$ROOT/bench/out/io
PY=/usr/bin/python3
REPEAT=${REPEAT:-3}
FILE_MB=${FILE_MB:-1024}
UDP_N=${UDP_N:-100000}
TLS_R=${TLS_R:-1000}
TLS_C=${TLS_C:-50}
mkdir -p "$OUT" "$ROOT/bench/results"
cd "$ROOT"
LOOM_BUILD_DIR=bench/out/io/build BUILD_TYPE=Release bash .ci/setup build
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/spec/?.lua;;"
export LUA_CPATH="$OUT/build/?.so;;"
gcc -O2 -o "$OUT/udp_c_libuv" "$IO/udp_c_libuv.c" $(pkg-config --cflags --libs libuv)
CERTS=$(lua5.4 -e 'print(require("tls_certs").make().dir)')
DATA="$OUT/data.bin"
if [ ! -f "$DATA" ] || [ "$(stat -c %s "$DATA")" -ne $((FILE_MB * 1048576)) ]; then
  head -c $((FILE_MB * 1048576)) /dev/urandom > "$DATA"
fi
cat "$DATA" > /dev/null   # every reader starts from the page cache

LOG="$OUT/runs.txt"
: > "$LOG"
run() {   # name, metric column (field before the unit), command...
  local name=$1; shift
  local line
  line=$("$@" 2>&1 | tail -n 1)
  echo "$name: $line" | tee -a "$LOG"
}
for _ in $(seq "$REPEAT"); do
  run file-loom lua5.4 "$IO/file_read.lua" "$DATA"
  run file-node node "$IO/file_read.node.js" "$DATA"
  run file-anyio $PY "$IO/file_read.anyio.py" "$DATA"
  run udp-loom lua5.4 "$IO/udp_echo.lua" "$UDP_N" 10
  run udp-c "$OUT/udp_c_libuv" "$UDP_N" 10
  run udp-uvloop $PY "$IO/udp_echo.uvloop.py" "$UDP_N" 10
  run tls-loom lua5.4 "$IO/tls_echo.lua" "$TLS_R" "$TLS_C" "$CERTS"
  run tls-node node "$IO/tls_echo.node.js" "$TLS_R" "$TLS_C" "$CERTS"
  run tls-uvloop $PY "$IO/tls_echo.uvloop.py" "$TLS_R" "$TLS_C" "$CERTS"
done
rm -rf "$CERTS"

# Medians of the number before the unit (MB/s or rt/s).
median() {
  grep "^$1: " "$LOG" | grep -oE '[0-9.]+ (MB/s|rt/s)' | awk '{print $1}' \
    | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'
}
{
  echo "## I/O: files, UDP, TLS (bench/io, \`make bench-io\`)"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, medians of $REPEAT runs; the machine was"
  echo "shared with other jobs while measuring, so treat differences under ~20 % as noise."
  echo
  echo "| workload | loom | Node.js | Python | C on libuv |"
  echo "|---|---:|---:|---:|---:|"
  echo "| read ${FILE_MB} MiB file in 64 KiB chunks (MB/s) | $(median file-loom) | $(median file-node) (fs.promises) | $(median file-anyio) (anyio.open_file) | — |"
  echo "| UDP echo, $UDP_N datagrams, 10 clients (round trips/s) | $(median udp-loom) | — | $(median udp-uvloop) (uvloop) | $(median udp-c) |"
  echo "| TLS echo, $TLS_C clients × $TLS_R round trips (round trips/s) | $(median tls-loom) | $(median tls-node) (tls) | $(median tls-uvloop) (uvloop+ssl) | — |"
  echo
  echo "Notes: the file is read from the page cache (it is read once before the runs); loom"
  echo "reads ahead one chunk when a file is read in sequence. The uvloop UDP peer uses"
  echo "callback protocols (no coroutine per client), loom tasks and blocking-style calls."
  echo "TLS runs include the 50 handshakes (TLS 1.3, P-256 certificates made by the test)."
  echo "The peak RSS of loom's 1 GiB read was $(grep '^file-loom' "$LOG" | grep -oE 'peak_rss_kb=[0-9]+' | head -n 1 | cut -d= -f2) KiB."
} > "$ROOT/bench/results/io.md"
cat "$ROOT/bench/results/io.md"
