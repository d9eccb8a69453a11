"""W3 ping-pong through channels. asyncio has no rendezvous channel; the
nearest thing a user picks is asyncio.Queue(maxsize=1) (arg 2: uvloop)."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import asyncio
import benchlib as B

M = B.arg(1, 1000000)
IMPL = B.asyncio_flavour()


async def main():
    to_b, to_a = asyncio.Queue(1), asyncio.Queue(1)

    async def ping():
        for i in range(M):
            await to_b.put(i)
            await to_a.get()

    async def pong():
        for _ in range(M):
            await to_a.put(await to_b.get())

    t0 = B.now()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(pong())
        tg.create_task(ping())
    return B.now() - t0


secs = asyncio.run(main())
B.report("W3-channel", IMPL, M, secs, "ns_per_switch=%.1f" % (secs * 1e9 / (2 * M)))
