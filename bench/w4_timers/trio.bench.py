"""W4 timers: N tasks each trio.sleep() 0..100 ms."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import trio
import benchlib as B

N = B.arg(1, 100000)
DELAYS, MAX_MS = B.delays_ms(N)


async def main():
    t0 = B.now()
    async with trio.open_nursery() as nursery:
        for d in DELAYS:
            nursery.start_soon(trio.sleep, d / 1000)
    return B.now() - t0


secs = trio.run(main)
B.report("W4", "trio", N, secs, "overhead_ms=%.1f" % ((secs - MAX_MS / 1000) * 1000))
