"""W2 spawn + one sleep(0) + join in an asyncio.TaskGroup (arg 2: uvloop)."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import asyncio
import benchlib as B

N = B.arg(1, 100000)
IMPL = B.asyncio_flavour()


async def task():
    await asyncio.sleep(0)


async def main():
    t0 = B.now()
    async with asyncio.TaskGroup() as tg:
        for _ in range(N):
            tg.create_task(task())
    return B.now() - t0


B.report("W2", IMPL, N, asyncio.run(main()))
