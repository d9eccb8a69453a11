// Shared helpers for the Node.js bench scripts. Every script prints one line:
//   workload impl N seconds ops_per_sec peak_rss_kb [extra=k=v[,k=v]]
'use strict';
const fs = require('fs');

const now = () => Number(process.hrtime.bigint()) / 1e9;

function statusKb(field) {
  const m = fs.readFileSync('/proc/self/status', 'utf8').match(new RegExp(field + ':\\s+(\\d+)'));
  return Number(m[1]);
}

function settledRssKb() {
  if (global.gc) { global.gc(); global.gc(); }
  return statusKb('VmRSS');
}

const arg = (i, d) => (process.argv.length > i + 1 ? Math.trunc(Number(process.argv[i + 1])) : d);

// W4 delays in whole ms, 0..100: minstd (Park-Miller), seed 42.
function delaysMs(n) {
  let x = 42, max = 0;
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    x = (x * 48271) % 2147483647;
    out[i] = x % 101;
    if (out[i] > max) max = out[i];
  }
  return [out, max];
}

function report(workload, impl, n, seconds, extra) {
  let line = `${workload} ${impl} ${n} ${seconds.toFixed(6)} ${(n / seconds).toFixed(1)} ${statusKb('VmHWM')}`;
  if (extra) line += ` extra=${extra}`;
  process.stdout.write(line + '\n');
}

module.exports = { now, statusKb, settledRssKb, arg, delaysMs, report };
