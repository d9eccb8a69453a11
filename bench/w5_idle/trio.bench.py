"""W5 idle memory: N Trio tasks blocked on one trio.Event.
bytes_per_task = growth of VmRSS (after gc.collect) / N."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import trio
import benchlib as B

N = B.arg(1, 100000)


async def main():
    ev = trio.Event()
    started = 0

    async def waiter():
        nonlocal started
        started += 1
        await ev.wait()

    base = B.settled_rss_kb()
    t0 = B.now()
    async with trio.open_nursery() as nursery:
        for _ in range(N):
            nursery.start_soon(waiter)
        while started < N:
            await trio.sleep(0)
        p0 = B.now()
        blocked = B.settled_rss_kb()
        paused = B.now() - p0
        ev.set()
    return B.now() - t0 - paused, (blocked - base) * 1024 / N


secs, per_task = trio.run(main)
B.report("W5", "trio", N, secs, "bytes_per_task=%.0f" % per_task)
