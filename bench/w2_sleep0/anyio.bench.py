"""W2 spawn + one sleep(0) + join in an AnyIO task group (asyncio backend)."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import anyio
import benchlib as B

N = B.arg(1, 100000)


async def task():
    await anyio.sleep(0)


async def main():
    t0 = B.now()
    async with anyio.create_task_group() as tg:
        for _ in range(N):
            tg.start_soon(task)
    return B.now() - t0


B.report("W2", "anyio", N, anyio.run(main))
