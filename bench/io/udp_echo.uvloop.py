"""UDP echo on 127.0.0.1 with asyncio datagram endpoints (uvloop unless
argv[3] == 'asyncio'): C clients each do N/C round trips of 64 bytes."""
import asyncio
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
C = int(sys.argv[2]) if len(sys.argv) > 2 else 10
FLAVOUR = sys.argv[3] if len(sys.argv) > 3 else "uvloop"
MSG = b"x" * 64


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.t = transport

    def datagram_received(self, data, addr):
        self.t.sendto(data, addr)


class Client(asyncio.DatagramProtocol):
    def __init__(self, rounds, done):
        self.left, self.done = rounds, done

    def connection_made(self, transport):
        self.t = transport
        transport.sendto(MSG)

    def datagram_received(self, data, addr):
        self.left -= 1
        if self.left == 0:
            self.done.set_result(None)
        else:
            self.t.sendto(MSG)


async def main():
    loop = asyncio.get_running_loop()
    srv, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    port = srv.get_extra_info("sockname")[1]
    t0 = time.perf_counter()
    futs, transports = [], []
    for _ in range(C):
        f = loop.create_future()
        t, _ = await loop.create_datagram_endpoint(
            lambda f=f: Client(N // C, f), remote_addr=("127.0.0.1", port))
        futs.append(f)
        transports.append(t)
    await asyncio.gather(*futs)
    dt = time.perf_counter() - t0
    for t in transports:
        t.close()
    srv.close()
    print(f"{FLAVOUR} udp_echo {N} round trips {dt:.3f} s {N / dt:.0f} rt/s")


if FLAVOUR == "uvloop":
    import uvloop
    uvloop.install()
asyncio.run(main())
