"""A captive portal for namespace tests: answers every GET with a redirect to a login page,
or with 204 No Content once the file STATE says "free" (the user logged in).

Usage: python portal_server.py PORT STATE
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Portal(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        state = Path(sys.argv[2])
        if state.exists() and state.read_text().strip() == "free":
            self.send_response(204)
        else:
            self.send_response(302)
            self.send_header("Location", "http://10.0.1.1:8081/login")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Portal).serve_forever()
