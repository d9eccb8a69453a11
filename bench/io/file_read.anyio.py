"""Read a file in 64 KiB chunks with anyio.open_file; prints MB/s."""
import sys
import time

import anyio


async def main(path):
    t0 = time.perf_counter()
    n = 0
    async with await anyio.open_file(path, "rb") as f:
        while True:
            chunk = await f.read(65536)
            if not chunk:
                break
            n += len(chunk)
    dt = time.perf_counter() - t0
    print(f"anyio file_read {n} bytes {dt:.3f} s {n / dt / 1e6:.1f} MB/s")


anyio.run(main, sys.argv[1])
