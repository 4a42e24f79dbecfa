"""A tiny DNS server and client for namespace tests (no dnsutils needed).

    python dns_responder.py serve ANSWER LOG   answer every A query on UDP port 53 (all
                                               addresses, both families) with ANSWER; log
                                               each querier
    python dns_responder.py query SERVER NAME  ask SERVER for NAME's A record over UDP;
                                               print the address (exit 1 without an answer)
"""

from __future__ import annotations

import secrets
import socket
import struct
import sys


def serve(answer: str, log: str) -> None:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too
    sock.bind(("::", 53))
    while True:
        query, peer = sock.recvfrom(512)
        with open(log, "a") as out:
            out.write(peer[0].removeprefix("::ffff:") + "\n")
        if len(query) < 12:
            continue
        question = query[12:]
        end = question.index(b"\0") + 5  # the name, its type and class
        header = query[:2] + b"\x81\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00"
        record = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(answer)
        sock.sendto(header + question[:end] + record, peer)


def query(server: str, name: str) -> int:
    ident = secrets.token_bytes(2)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    packet = ident + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x01\x00\x01"
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(2)
    try:
        sock.sendto(packet, (server, 53))
        answer, _ = sock.recvfrom(512)
    except OSError:
        return 1
    if answer[:2] != ident or len(answer) < 4:
        return 1
    print(socket.inet_ntoa(answer[-4:]))
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        sys.exit(query(sys.argv[2], sys.argv[3]))
