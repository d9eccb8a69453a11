// W7 cancellation in Node: promises cannot be cancelled; the idiom is an
// AbortSignal. N async functions await a promise that rejects on 'abort';
// controller.abort() cancels them all. Timed from abort() until
// Promise.allSettled() resolves.
'use strict';
const { setMaxListeners } = require('events');
const B = require('../lib/benchlib.js');
const N = B.arg(1, 100000);

function sleepForever(signal) {
  return new Promise((_, reject) => {
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

async function main() {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  let started = 0;
  async function sleeper() { started++; await sleepForever(controller.signal); }
  const tasks = new Array(N);
  for (let i = 0; i < N; i++) tasks[i] = sleeper();
  if (started !== N) throw new Error('not all blocked');
  const t0 = B.now();
  controller.abort();
  await Promise.allSettled(tasks);
  B.report('W7', 'node', N, B.now() - t0);
}
main();
