// Process workloads for Node.js child_process.
// Usage: node node_bench.js spawn N C | cat MB
'use strict';
const { spawn } = require('child_process');
const what = process.argv[2];
const t0 = process.hrtime.bigint();
const secs = () => Number(process.hrtime.bigint() - t0) / 1e9;

if (what === 'spawn') {
  const n = +process.argv[3], c = +process.argv[4];
  let left = n, running = 0;
  const next = () => {
    if (left === 0) {
      if (running === 0) {
        const s = secs();
        console.log(`spawn node ${n} ${s.toFixed(4)} ${(n / s).toFixed(1)}`);
      }
      return;
    }
    left--; running++;
    const p = spawn('true', [], { stdio: 'ignore' });
    p.on('exit', () => { running--; next(); });
  };
  for (let i = 0; i < c; i++) next();
} else {
  const mb = +process.argv[3];
  const chunk = Buffer.alloc(1 << 20, 'x');
  const p = spawn('cat', [], { stdio: ['pipe', 'pipe', 'inherit'] });
  let got = 0, sent = 0;
  p.stdout.on('data', (d) => { got += d.length; });
  p.on('close', () => {
    if (got !== mb * (1 << 20)) throw new Error('short read');
    const s = secs();
    console.log(`cat node ${mb} ${s.toFixed(4)} ${(mb / s).toFixed(1)}`);
  });
  const write = () => {
    while (sent < mb) {
      sent++;
      if (!p.stdin.write(chunk)) { p.stdin.once('drain', write); return; }
    }
    p.stdin.end();
  };
  write();
}
