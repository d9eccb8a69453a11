"""W6 TCP echo on 127.0.0.1 with AnyIO (asyncio backend): create_tcp_listener
+ serve, connect_tcp. Args: R round trips per client, C clients."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import anyio
from anyio.abc import SocketAttribute
import benchlib as B

R, C = B.arg(1, 2000), B.arg(2, 50)
MSG = b"x" * 64


async def echo(stream):
    async with stream:
        try:
            while True:
                await stream.send(await stream.receive(65536))
        except anyio.EndOfStream:
            pass


async def client(port):
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        for _ in range(R):
            await stream.send(MSG)
            got = 0
            while got < 64:
                got += len(await stream.receive(64 - got))


async def main():
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        t0 = B.now()
        async with anyio.create_task_group() as clients:
            for _ in range(C):
                clients.start_soon(client, port)
        secs = B.now() - t0
        tg.cancel_scope.cancel()
    return secs


B.report("W6", "anyio", R * C, anyio.run(main))
