"""A flood of valid handshake initiations, bounded in rate and time, for one target address.

Run inside an attacker namespace:

    python3 -m tests.integration.flood TARGET_IP PORT RESPONDER_X25519_HEX \
        --seconds 10 --spoofed-rate 8000 --spoofed-net 10.99.0.0/16 \
        --real-rate 2000 --real-source 203.0.113.11 --real-source 203.0.113.12

Every initiation is valid: a fresh identity's Noise message to the responder's real key, with
a correct mac1, so only its source address can give it away. Spoofed ones leave from random
addresses of ``--spoofed-net``, which the caller must make local to the attacker's namespace
(``ip route add local <net> dev lo``): the test assigns them, and whatever the target answers
comes back to the attacker. Real sources answer cookie replies as a real initiator would and
then send their initiations with a valid mac2. The target only ever gets what it is owed.

Against a node without cookies (oneservice before them) the initiations carry no MACs, as that
node expects, so the same flood measures the old code too. Prints one JSON line of figures.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import struct
import time

from oneservice.node import wire
from oneservice.node.noise import Initiator
from oneservice.primitives import Ed25519Key, X25519Key, new_ed25519_private, new_x25519_private

try:
    from oneservice.node import cookies
except ImportError:  # a node from before cookies
    cookies = None

IP_PKTINFO = 8  # linux/in.h; not exported by Python's socket module
TICK_S = 0.01
POOL = 1024


def _initiations(responder_public: bytes, count: int) -> list[tuple[bytes, bytes]]:
    """(body, mac1) of ``count`` initiations from fresh identities (no address needed: the
    responder derives it)."""
    pool = []
    key = cookies.mac1_key(responder_public) if cookies else b""
    for index in range(1, count + 1):
        ed25519 = Ed25519Key(new_ed25519_private()).public
        noise = Initiator(X25519Key(new_x25519_private()), responder_public, wire.PROLOGUE)
        message = noise.write_message_1(wire.encode_timestamp(time.time()) + ed25519)
        body = wire.handshake_init(index, message)
        pool.append((body, cookies.mac(key, body) if cookies else b""))
    return pool


def _datagram(body: bytes, mac1: bytes, cookie: bytes | None) -> bytes:
    return cookies.with_macs(body, mac1, cookie) if cookies else body


class RealSource:
    """A socket at a real address of the attacker: it reads cookie replies and uses them."""

    def __init__(self, address: str, pool: list[tuple[bytes, bytes]], responder: bytes) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.sock.setblocking(False)
        self.mac1_by_index = {struct.unpack_from("<I", body, 4)[0]: mac1 for body, mac1 in pool}
        self.cookie_key = cookies.cookie_key(responder) if cookies else b""
        self.cookie: bytes | None = None
        self.cookies_received = 0

    def read_replies(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if cookies is None or len(data) != wire.COOKIE_REPLY_LEN:
                continue
            mac1 = self.mac1_by_index.get(struct.unpack_from("<I", data, 4)[0])
            if mac1 is None:
                continue
            cookie = cookies.open_cookie(self.cookie_key, mac1, data[8:20], data[20:])
            if cookie is not None:
                self.cookie, self.cookies_received = cookie, self.cookies_received + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target")
    parser.add_argument("port", type=int)
    parser.add_argument("responder", help="the target's X25519 public key, hex")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--spoofed-rate", type=float, default=0.0)
    parser.add_argument("--spoofed-net", default="10.99.0.0/16")
    parser.add_argument("--real-rate", type=float, default=0.0, help="in all, over the sources")
    parser.add_argument("--real-source", action="append", default=[])
    args = parser.parse_args()
    if args.seconds > 60 or args.spoofed_rate + args.real_rate > 50_000:
        parser.error("bounded: at most 60 s and 50,000 initiations per second")
    responder = bytes.fromhex(args.responder)
    target = (args.target, args.port)
    pool = _initiations(responder, POOL)
    net = ipaddress.ip_network(args.spoofed_net)
    spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spoofer.setblocking(False)
    reals = [RealSource(address, pool, responder) for address in args.real_source]
    rng = random.Random(7)
    sent = {"spoofed": 0, "real": 0, "sendFailures": 0}
    start = time.monotonic()
    tick = 0
    while (now := time.monotonic()) - start < args.seconds:
        tick += 1
        # Catch up on the schedule: what should have left by now has left.
        due_spoofed = int(args.spoofed_rate * (now - start)) - sent["spoofed"]
        due_real = int(args.real_rate * (now - start)) - sent["real"]
        for _ in range(max(0, due_spoofed)):
            body, mac1 = pool[rng.randrange(POOL)]
            source = socket.inet_aton(str(net[rng.randrange(1, net.num_addresses - 1)]))
            info = struct.pack("@I4s4s", 0, source, bytes(4))
            try:
                spoofer.sendmsg([_datagram(body, mac1, None)],
                                [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, target)  # fmt: skip
            except OSError:
                sent["sendFailures"] += 1
            sent["spoofed"] += 1
        for n in range(max(0, due_real) if reals else 0):
            real = reals[n % len(reals)]
            body, mac1 = pool[rng.randrange(POOL)]
            try:
                real.sock.sendto(_datagram(body, mac1, real.cookie), target)
            except OSError:
                sent["sendFailures"] += 1
            sent["real"] += 1
        for real in reals:
            real.read_replies()
        time.sleep(max(0.0, start + tick * TICK_S - time.monotonic()))
    print(json.dumps({
        **sent, "seconds": round(time.monotonic() - start, 2),
        "cookiesReceived": sum(r.cookies_received for r in reals),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
