"""Open N TCP connections to 127.0.0.1:PORT, send half a request head on each, and hold them
(a local user starving the API) until killed. Prints "holding N" once they are all open.

Usage: python hold_connections.py PORT N
"""

from __future__ import annotations

import resource
import socket
import sys
import time


def main() -> None:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
    held = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=5)
        connection.sendall(b"GET /status HTTP/1.1\r\nX-ZT1-")  # and never the rest
        held.append(connection)
    print(f"holding {len(held)}", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
