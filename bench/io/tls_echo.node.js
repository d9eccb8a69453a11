// TLS echo on 127.0.0.1 with Node's tls: C clients x R round trips of 64
// bytes. Args: R C CERTDIR.
const tls = require("tls");
const fs = require("fs");
const [R, C, dir] = [+process.argv[2] || 1000, +process.argv[3] || 50, process.argv[4]];
const MSG = Buffer.alloc(64, "x");
const server = tls.createServer({
  cert: fs.readFileSync(dir + "/server.pem"),
  key: fs.readFileSync(dir + "/server.key"),
}, (s) => { s.on("data", (d) => s.write(d)); s.on("error", () => {}); });
server.listen(0, "127.0.0.1", () => {
  const port = server.address().port;
  const ca = fs.readFileSync(dir + "/ca.pem");
  const t0 = process.hrtime.bigint();
  let left = C;
  for (let i = 0; i < C; i++) {
    let rounds = R, got = 0;
    const s = tls.connect({ host: "127.0.0.1", port, ca }, () => s.write(MSG));
    s.on("data", (d) => {
      got += d.length;
      if (got < 64) return;
      got = 0;
      if (--rounds > 0) { s.write(MSG); return; }
      s.end();
      if (--left === 0) {
        const dt = Number(process.hrtime.bigint() - t0) / 1e9;
        console.log(`node tls_echo ${R * C} round trips ${dt.toFixed(3)} s ${(R * C / dt).toFixed(0)} rt/s`);
        server.close();
      }
    });
  }
});
