// W5 idle memory: N async functions all awaiting one Promise (the "event").
// bytes_per_task = growth of VmRSS (after global.gc(); run with --expose-gc) / N.
'use strict';
const B = require('../lib/benchlib.js');
const N = B.arg(1, 100000);

async function main() {
  let set;
  const ev = new Promise((resolve) => { set = resolve; });
  let started = 0;
  async function waiter() { started++; await ev; }

  const base = B.settledRssKb();
  const t0 = B.now();
  const tasks = new Array(N);
  for (let i = 0; i < N; i++) tasks[i] = waiter();
  // every waiter ran synchronously up to its await, so all N are blocked now
  if (started !== N) throw new Error('not all blocked');
  const p0 = B.now();
  const blocked = B.settledRssKb();
  const paused = B.now() - p0;
  set();
  await Promise.all(tasks);
  const secs = B.now() - t0 - paused;
  B.report('W5', 'node', N, secs, `bytes_per_task=${((blocked - base) * 1024 / N).toFixed(0)}`);
}
main();
