"""Round trip of a trivial anyio.to_thread.run_sync call (asyncio backend):
N calls one after the other from one task. Prints µs per call."""
import sys, time
import anyio

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000


def noop():
    pass


async def main():
    for _ in range(100):
        await anyio.to_thread.run_sync(noop)
    t0 = time.perf_counter()
    for _ in range(N):
        await anyio.to_thread.run_sync(noop)
    return (time.perf_counter() - t0) / N * 1e6

print("%.2f" % anyio.run(main))
