"""Listens on host:port and prints each datagram as a JSON line; the test's receiving end."""

from __future__ import annotations

import json
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
sock = socket.socket(family, socket.SOCK_DGRAM)
sock.bind((host, port))
print(json.dumps({"listening": [host, port]}), flush=True)
while True:
    data, source = sock.recvfrom(65535)
    print(json.dumps({"data": data.decode(errors="replace"), "from": [source[0], source[1]]}),
          flush=True)  # fmt: skip
