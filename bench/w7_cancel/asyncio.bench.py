"""W7 cancellation with asyncio (arg 2: uvloop). asyncio.TaskGroup has no
cancel(); the idiom is raising out of its body, which cancels every child.
N children wait on never-resolved futures. Timed from the raise until the
group has unwound."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import asyncio
import benchlib as B

N = B.arg(1, 100000)
IMPL = B.asyncio_flavour()


class Stop(Exception):
    pass


async def main():
    started = 0

    async def sleeper():
        nonlocal started
        started += 1
        await asyncio.get_running_loop().create_future()  # sleep forever

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(N):
                tg.create_task(sleeper())
            while started < N:
                await asyncio.sleep(0)
            t0 = B.now()
            raise Stop
    except* Stop:
        pass
    return B.now() - t0


B.report("W7", IMPL, N, asyncio.run(main()))
