// Round trip of a worker_threads message: the main thread posts, the worker
// echoes, N times one after the other. Prints µs per round trip.
const { Worker } = require("worker_threads");
const N = Number(process.argv[2] || 20000);
const w = new Worker("const { parentPort } = require('worker_threads');" +
  "parentPort.on('message', (m) => parentPort.postMessage(m));",
  { eval: true });
let i = 0, t0 = 0;
w.on("message", () => {
  i++;
  if (i === 100) t0 = process.hrtime.bigint();
  if (i === 100 + N) {
    const us = Number(process.hrtime.bigint() - t0) / 1000 / N;
    console.log(us.toFixed(2));
    w.terminate();
    return;
  }
  w.postMessage(i);
});
w.postMessage(0);
