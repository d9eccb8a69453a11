"""W6 TCP echo on 127.0.0.1 with asyncio streams, server and clients in one
loop (arg 3 'uvloop'). Args: R round trips per client, C clients."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import asyncio
import benchlib as B

R, C = B.arg(1, 2000), B.arg(2, 50)
IMPL = B.asyncio_flavour()
MSG = b"x" * 64


async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def client(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(R):
        writer.write(MSG)
        await writer.drain()
        await reader.readexactly(64)
    writer.close()
    await writer.wait_closed()


async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    t0 = B.now()
    async with asyncio.TaskGroup() as tg:
        for _ in range(C):
            tg.create_task(client(port))
    secs = B.now() - t0
    server.close()
    return secs


B.report("W6", IMPL, R * C, asyncio.run(main()))
