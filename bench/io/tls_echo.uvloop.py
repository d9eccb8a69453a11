"""TLS echo on 127.0.0.1 with asyncio streams + ssl (uvloop unless argv[4]
== 'asyncio'): C clients x R round trips of 64 bytes. Args: R C CERTDIR."""
import asyncio
import ssl
import sys
import time

R, C, DIR = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
FLAVOUR = sys.argv[4] if len(sys.argv) > 4 else "uvloop"
MSG = b"x" * 64


async def echo(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    writer.close()


async def client(port, ctx):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    for _ in range(R):
        writer.write(MSG)
        await writer.drain()
        await reader.readexactly(64)
    writer.close()


async def main():
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(DIR + "/server.pem", DIR + "/server.key")
    cctx = ssl.create_default_context(cafile=DIR + "/ca.pem")
    srv = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=sctx)
    port = srv.sockets[0].getsockname()[1]
    t0 = time.perf_counter()
    await asyncio.gather(*(client(port, cctx) for _ in range(C)))
    dt = time.perf_counter() - t0
    srv.close()
    print(f"{FLAVOUR} tls_echo {R * C} round trips {dt:.3f} s {R * C / dt:.0f} rt/s")


if FLAVOUR == "uvloop":
    import uvloop
    uvloop.install()
asyncio.run(main())
