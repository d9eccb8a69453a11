"""W4 timers: N tasks each anyio.sleep() 0..100 ms (asyncio backend)."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import anyio
import benchlib as B

N = B.arg(1, 100000)
DELAYS, MAX_MS = B.delays_ms(N)


async def main():
    t0 = B.now()
    async with anyio.create_task_group() as nursery:
        for d in DELAYS:
            nursery.start_soon(anyio.sleep, d / 1000)
    return B.now() - t0


secs = anyio.run(main)
B.report("W4", "anyio", N, secs, "overhead_ms=%.1f" % ((secs - MAX_MS / 1000) * 1000))
