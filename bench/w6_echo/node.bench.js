// W6 TCP echo on 127.0.0.1 with the net module (callbacks and events, as Node
// users write it), server and clients in one process. Args: R, C.
'use strict';
const net = require('net');
const B = require('../lib/benchlib.js');
const R = B.arg(1, 2000), C = B.arg(2, 50);
const MSG = Buffer.alloc(64, 'x');

const server = net.createServer((sock) => {
  sock.on('data', (data) => sock.write(data));
  sock.on('end', () => sock.end());
});

server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  const t0 = B.now();
  let left = C;
  for (let c = 0; c < C; c++) {
    let rounds = 0, got = 0;
    const sock = net.connect(port, '127.0.0.1', () => sock.write(MSG));
    sock.on('data', (data) => {
      got += data.length;
      if (got < 64) return;
      got = 0;
      if (++rounds < R) { sock.write(MSG); return; }
      sock.end();
      if (--left === 0) {
        B.report('W6', 'node', R * C, B.now() - t0);
        server.close();
      }
    });
  }
});
