"""W5 idle memory: N asyncio tasks blocked on one asyncio.Event (arg 2: uvloop).
bytes_per_task = growth of VmRSS (after gc.collect) / N."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import asyncio
import benchlib as B

N = B.arg(1, 100000)
IMPL = B.asyncio_flavour()


async def main():
    ev = asyncio.Event()
    started = 0

    async def waiter():
        nonlocal started
        started += 1
        await ev.wait()

    base = B.settled_rss_kb()
    t0 = B.now()
    async with asyncio.TaskGroup() as tg:
        for _ in range(N):
            tg.create_task(waiter())
        while started < N:
            await asyncio.sleep(0)
        p0 = B.now()
        blocked = B.settled_rss_kb()
        paused = B.now() - p0
        ev.set()
    return B.now() - t0 - paused, (blocked - base) * 1024 / N


secs, per_task = asyncio.run(main())
B.report("W5", IMPL, N, secs, "bytes_per_task=%.0f" % per_task)
