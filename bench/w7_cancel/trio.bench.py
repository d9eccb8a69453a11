"""W7 cancellation: N Trio tasks in trio.sleep_forever(), then
nursery.cancel_scope.cancel(). Timed from cancel() to the nursery's exit."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import trio
import benchlib as B

N = B.arg(1, 100000)


async def main():
    started = 0

    async def sleeper():
        nonlocal started
        started += 1
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        for _ in range(N):
            nursery.start_soon(sleeper)
        while started < N:
            await trio.sleep(0)
        t0 = B.now()
        nursery.cancel_scope.cancel()
    return B.now() - t0


B.report("W7", "trio", N, trio.run(main))
