"""W3 ping-pong through a fresh asyncio.Event per hop (arg 2: uvloop)."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import asyncio
import benchlib as B

M = B.arg(1, 1000000)
IMPL = B.asyncio_flavour()


async def main():
    wake = {"b": asyncio.Event()}

    async def ping():
        for _ in range(M):
            wake["a"] = asyncio.Event()
            wake["b"].set()
            await wake["a"].wait()

    async def pong():
        for _ in range(M):
            await wake["b"].wait()
            wake["b"] = asyncio.Event()
            wake["a"].set()

    t0 = B.now()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(pong())
        tg.create_task(ping())
    return B.now() - t0


secs = asyncio.run(main())
B.report("W3-event", IMPL, M, secs, "ns_per_switch=%.1f" % (secs * 1e9 / (2 * M)))
