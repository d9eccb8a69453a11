// W1 spawn + join: N trivial async functions, joined with Promise.all.
// Note: an async function runs synchronously up to its first await, so a
// trivial one never touches the event loop; this is what Node users write.
'use strict';
const B = require('../lib/benchlib.js');
const N = B.arg(1, 100000);

async function noop() {}

async function main() {
  const t0 = B.now();
  const tasks = new Array(N);
  for (let i = 0; i < N; i++) tasks[i] = noop();
  await Promise.all(tasks);
  B.report('W1', 'node', N, B.now() - t0);
}
main();
