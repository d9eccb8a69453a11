// W7 cancellation in Node: promises cannot be cancelled; the idiom is an
// AbortSignal. Registering one 'abort' listener per task is quadratic in Node
// 20 (addEventListener scans for duplicates: 1e5 listeners take ~50 s), so the
// signal gets one listener that rejects a shared promise, which all N async
// functions await. Timed from abort() until Promise.allSettled() resolves.
'use strict';
const B = require('../lib/benchlib.js');
const N = B.arg(1, 100000);

function abortPromise(signal) {
  const p = new Promise((_, reject) => {
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  p.catch(() => {}); // handled by the tasks
  return p;
}

async function main() {
  const controller = new AbortController();
  const aborted = abortPromise(controller.signal);
  let started = 0;
  async function sleeper() { started++; await aborted; }
  const tasks = new Array(N);
  for (let i = 0; i < N; i++) tasks[i] = sleeper();
  if (started !== N) throw new Error('not all blocked');
  const t0 = B.now();
  controller.abort();
  await Promise.allSettled(tasks);
  B.report('W7', 'node', N, B.now() - t0);
}
main();
