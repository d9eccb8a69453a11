"""A tiny HTTPS server for examples/https_get.lua's test, on Python's
http.server and ssl. Usage: https_server.py CERT KEY
Prints its port, answers one request, exits."""
import http.server
import ssl
import sys

BODY = b"hello from a local TLS server\n"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
# A client that never comes (the example failed before connecting) must not
# hang the suite: handle_request gives up after this many seconds.
httpd.timeout = 30
print(httpd.server_address[1], flush=True)
httpd.handle_request()
