"""A tiny HTTP server for the "internet" host: answers every GET with the address the request
came from, so a test can see whether traffic arrived from the gateway or the client itself.

Usage: python whoami_server.py PORT   (listens on IPv4 and IPv6)
"""

from __future__ import annotations

import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WhoAmI(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        address = self.client_address[0].removeprefix("::ffff:")
        body = address.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


if __name__ == "__main__":
    server = DualStackServer(("::", int(sys.argv[1])), WhoAmI)
    print("listening", flush=True)
    server.serve_forever()
