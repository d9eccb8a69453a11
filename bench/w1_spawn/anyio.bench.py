"""W1 spawn + join: N trivial tasks in one AnyIO task group (asyncio backend)."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import anyio
import benchlib as B

N = B.arg(1, 100000)


async def noop():
    pass


async def main():
    t0 = B.now()
    async with anyio.create_task_group() as tg:
        for _ in range(N):
            tg.start_soon(noop)
    return B.now() - t0


B.report("W1", "anyio", N, anyio.run(main))
