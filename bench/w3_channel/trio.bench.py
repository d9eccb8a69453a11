"""W3 ping-pong through two trio memory channels of buffer size 0."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import trio
import benchlib as B

M = B.arg(1, 1000000)


async def main():
    to_b_send, to_b_recv = trio.open_memory_channel(0)
    to_a_send, to_a_recv = trio.open_memory_channel(0)

    async def ping():
        for i in range(M):
            await to_b_send.send(i)
            await to_a_recv.receive()

    async def pong():
        for _ in range(M):
            await to_a_send.send(await to_b_recv.receive())

    t0 = B.now()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pong)
        nursery.start_soon(ping)
    return B.now() - t0


secs = trio.run(main)
B.report("W3-channel", "trio", M, secs, "ns_per_switch=%.1f" % (secs * 1e9 / (2 * M)))
