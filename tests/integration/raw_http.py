"""Send one HTTP request exactly as given (base64 of its bytes) to 127.0.0.1:PORT over a raw
socket, as zerotier-cli would, and print {"status": N, "body": <JSON answer>} as JSON.

Usage: python raw_http.py PORT BASE64_REQUEST
"""

from __future__ import annotations

import base64
import json
import socket
import sys


def main() -> None:
    port, request = int(sys.argv[1]), base64.b64decode(sys.argv[2])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(line.split(":", 1)[1]) for line in lines
                      if line.lower().startswith("content-length:"))  # fmt: skip
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
    print(json.dumps({"status": int(lines[0].split(" ")[1]), "body": json.loads(body)}))


if __name__ == "__main__":
    main()
