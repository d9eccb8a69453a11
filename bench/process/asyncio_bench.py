"""Process workloads for asyncio.

Usage: python3 asyncio_bench.py spawn N C | cat MB"""
import asyncio, sys, time

async def spawn(n, c):
    left = [n]
    async def worker():
        while left[0] > 0:
            left[0] -= 1
            p = await asyncio.create_subprocess_exec(
                "true", stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
            await p.wait()
    await asyncio.gather(*(worker() for _ in range(c)))

async def cat(mb):
    chunk = b"x" * (1 << 20)
    p = await asyncio.create_subprocess_exec(
        "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    async def writer():
        for _ in range(mb):
            p.stdin.write(chunk)
            await p.stdin.drain()
        p.stdin.close()
    async def reader():
        got = 0
        while True:
            data = await p.stdout.read(65536)
            if not data:
                return got
            got += len(data)
    _, got = await asyncio.gather(writer(), reader())
    assert got == mb << 20
    await p.wait()

what = sys.argv[1]
t0 = time.perf_counter()
if what == "spawn":
    n, c = int(sys.argv[2]), int(sys.argv[3])
    asyncio.run(spawn(n, c))
    s = time.perf_counter() - t0
    print(f"spawn asyncio {n} {s:.4f} {n / s:.1f}")
else:
    mb = int(sys.argv[2])
    asyncio.run(cat(mb))
    s = time.perf_counter() - t0
    print(f"cat asyncio {mb} {s:.4f} {mb / s:.1f}")
