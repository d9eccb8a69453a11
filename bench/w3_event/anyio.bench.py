"""W3 ping-pong through a fresh anyio.Event per hop."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import anyio
import benchlib as B

M = B.arg(1, 1000000)


async def main():
    wake = {"b": anyio.Event()}

    async def ping():
        for _ in range(M):
            wake["a"] = anyio.Event()
            wake["b"].set()
            await wake["a"].wait()

    async def pong():
        for _ in range(M):
            await wake["b"].wait()
            wake["b"] = anyio.Event()
            wake["a"].set()

    t0 = B.now()
    async with anyio.create_task_group() as nursery:
        nursery.start_soon(pong)
        nursery.start_soon(ping)
    return B.now() - t0


secs = anyio.run(main)
B.report("W3-event", "anyio", M, secs, "ns_per_switch=%.1f" % (secs * 1e9 / (2 * M)))
