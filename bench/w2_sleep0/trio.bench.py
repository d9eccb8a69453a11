"""W2 spawn + one sleep(0) + join in a Trio nursery."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import trio
import benchlib as B

N = B.arg(1, 100000)


async def task():
    await trio.sleep(0)


async def main():
    t0 = B.now()
    async with trio.open_nursery() as nursery:
        for _ in range(N):
            nursery.start_soon(task)
    return B.now() - t0


B.report("W2", "trio", N, trio.run(main))
