"""TLS peers for spec/tls_spec.lua, on Python's ssl module (written
independently of loom). Usage:
  tls_peer.py echo-server CERT KEY [CAFILE]   print the port, echo one
                                              connection until close_notify
  tls_peer.py client PORT HOST CAFILE NBYTES [CERT KEY]
                                              send NBYTES, read them back
"""
import socket
import ssl
import sys


def echo_server(cert, key, cafile=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["x-loom", "http/1.1"])
    if cafile:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    print(srv.getsockname()[1], flush=True)
    conn, _ = srv.accept()
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
    except ssl.SSLError as e:
        print("handshake failed:", e.reason, flush=True)
        return
    total = 0
    while True:
        data = tls.recv(65536)
        if not data:
            break
        total += len(data)
        tls.sendall(data)
    print("echoed", total, "alpn", tls.selected_alpn_protocol(), flush=True)
    tls.unwrap()
    tls.close()


def client(port, host, cafile, nbytes, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["x-loom"])
    if cert:
        ctx.load_cert_chain(cert, key)
    sock = socket.create_connection(("127.0.0.1", int(port)))
    try:
        tls = ctx.wrap_socket(sock, server_hostname=host)
    except ssl.SSLError as e:
        print("handshake failed:", e.reason, flush=True)
        return
    payload = bytes((i % 251 for i in range(int(nbytes))))
    got = b""
    try:
        tls.sendall(payload)
        while len(got) < len(payload):
            data = tls.recv(65536)
            if not data:
                break
            got += data
    except ssl.SSLError as e:
        # TLS 1.3: a refused client certificate shows after the handshake
        print("failed:", e.reason, flush=True)
        return
    print("client got", len(got), "same", got == payload, "alpn",
          tls.selected_alpn_protocol(), flush=True)
    tls.unwrap()
    tls.close()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "echo-server":
        echo_server(*sys.argv[2:])
    else:
        client(*sys.argv[2:])
