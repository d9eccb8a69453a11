// Read a file in 64 KiB chunks with fs.promises; prints MB/s. Args: PATH
const fs = require("fs");
(async () => {
  const t0 = process.hrtime.bigint();
  const fh = await fs.promises.open(process.argv[2], "r");
  const buf = Buffer.alloc(65536);
  let n = 0;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, 65536, null);
    if (bytesRead === 0) break;
    n += bytesRead;
  }
  await fh.close();
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`node file_read ${n} bytes ${dt.toFixed(3)} s ${(n / dt / 1e6).toFixed(1)} MB/s`);
})();
