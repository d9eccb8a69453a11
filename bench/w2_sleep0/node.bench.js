// W2 spawn + one sleep(0) + join: each async function yields once to the
// event loop with timers/promises setImmediate() (Node's equivalent of
// asyncio.sleep(0); `await null` would only be a microtask turn).
'use strict';
const { setImmediate: yieldToLoop } = require('timers/promises');
const B = require('../lib/benchlib.js');
const N = B.arg(1, 100000);

async function task() { await yieldToLoop(); }

async function main() {
  const t0 = B.now();
  const tasks = new Array(N);
  for (let i = 0; i < N; i++) tasks[i] = task();
  await Promise.all(tasks);
  B.report('W2', 'node', N, B.now() - t0);
}
main();
