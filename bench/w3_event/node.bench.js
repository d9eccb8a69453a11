// W3 ping-pong through events: an "event" is a fresh Promise plus its resolve
// function; awaiting it is the switch. M round trips = 2M switches.
'use strict';
const B = require('../lib/benchlib.js');
const M = B.arg(1, 1000000);

function event() {
  let set;
  const wait = new Promise((resolve) => { set = resolve; });
  return { set, wait };
}

async function main() {
  let wakeA, wakeB = event();
  async function ping() {
    for (let i = 0; i < M; i++) {
      wakeA = event();
      wakeB.set();
      await wakeA.wait;
    }
  }
  async function pong() {
    for (let i = 0; i < M; i++) {
      await wakeB.wait;
      wakeB = event();
      wakeA.set();
    }
  }
  const t0 = B.now();
  await Promise.all([pong(), ping()]);
  const secs = B.now() - t0;
  B.report('W3-event', 'node', M, secs, `ns_per_switch=${(secs * 1e9 / (2 * M)).toFixed(1)}`);
}
main();
