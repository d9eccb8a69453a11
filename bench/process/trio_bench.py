"""Process workloads for Trio.

Usage: python3 trio_bench.py spawn N C | cat MB"""
import subprocess, sys, time
import trio

async def spawn(n, c):
    left = [n]
    async def worker():
        while left[0] > 0:
            left[0] -= 1
            await trio.run_process(["true"], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
    async with trio.open_nursery() as nursery:
        for _ in range(c):
            nursery.start_soon(worker)

async def cat(mb):
    chunk = b"x" * (1 << 20)
    p = await trio.lowlevel.open_process(["cat"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE)
    got = [0]
    async def writer():
        for _ in range(mb):
            await p.stdin.send_all(chunk)
        await p.stdin.aclose()
    async def reader():
        while True:
            data = await p.stdout.receive_some(65536)
            if not data:
                return
            got[0] += len(data)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        nursery.start_soon(reader)
    assert got[0] == mb << 20
    await p.wait()

what = sys.argv[1]
t0 = time.perf_counter()
if what == "spawn":
    n, c = int(sys.argv[2]), int(sys.argv[3])
    trio.run(spawn, n, c)
    s = time.perf_counter() - t0
    print(f"spawn trio {n} {s:.4f} {n / s:.1f}")
else:
    mb = int(sys.argv[2])
    trio.run(cat, mb)
    s = time.perf_counter() - t0
    print(f"cat trio {mb} {s:.4f} {mb / s:.1f}")
