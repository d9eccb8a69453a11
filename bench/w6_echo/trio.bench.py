"""W6 TCP echo on 127.0.0.1 with Trio streams (serve_tcp / open_tcp_stream),
server and clients in one trio.run. Args: R round trips per client, C clients."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from functools import partial
import trio
import benchlib as B

R, C = B.arg(1, 2000), B.arg(2, 50)
MSG = b"x" * 64


async def echo(stream):
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def client(port):
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        for _ in range(R):
            await stream.send_all(MSG)
            got = 0
            while got < 64:
                got += len(await stream.receive_some(64 - got))


async def main():
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        t0 = B.now()
        async with trio.open_nursery() as clients:
            for _ in range(C):
                clients.start_soon(client, port)
        secs = B.now() - t0
        nursery.cancel_scope.cancel()
    return secs


B.report("W6", "trio", R * C, trio.run(main))
