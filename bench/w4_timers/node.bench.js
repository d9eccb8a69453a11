// W4 timers: N async functions each await timers/promises setTimeout(0..100 ms).
'use strict';
const { setTimeout: sleep } = require('timers/promises');
const B = require('../lib/benchlib.js');
const N = B.arg(1, 100000);
const [delays, maxMs] = B.delaysMs(N);

async function main() {
  const t0 = B.now();
  const tasks = new Array(N);
  for (let i = 0; i < N; i++) tasks[i] = sleep(delays[i]);
  await Promise.all(tasks);
  const secs = B.now() - t0;
  B.report('W4', 'node', N, secs, `overhead_ms=${((secs - maxMs / 1000) * 1000).toFixed(1)}`);
}
main();
