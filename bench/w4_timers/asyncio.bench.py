"""W4 timers: N tasks each asyncio.sleep() 0..100 ms (arg 2: uvloop)."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import asyncio
import benchlib as B

N = B.arg(1, 100000)
IMPL = B.asyncio_flavour()
DELAYS, MAX_MS = B.delays_ms(N)


async def main():
    t0 = B.now()
    async with asyncio.TaskGroup() as tg:
        for d in DELAYS:
            tg.create_task(asyncio.sleep(d / 1000))
    return B.now() - t0


secs = asyncio.run(main())
B.report("W4", IMPL, N, secs, "overhead_ms=%.1f" % ((secs - MAX_MS / 1000) * 1000))
