"""100,000 random and mutated datagrams: the core never raises, keeps serving the real peer,
and accounts for every datagram (accepted + dropped = received)."""

from __future__ import annotations

import random

from oneservice.node import wire
from tests.unit.corenet import connected_after_one_packet, ipv4_packet

TOTAL = 100_000


def test_fuzzed_datagrams_are_all_accounted_for_and_harmless():
    sim = connected_after_one_packet()
    a, b = sim.nodes["a"], sim.nodes["b"]
    genuine = [data for name, _, data in sim.wire_log if name == "a"]
    rng = random.Random(7)
    accepted_before, dropped_before = b.accepted, sum(b.drops.values())
    for n in range(TOTAL):
        choice = n % 4
        if choice == 0:  # pure noise of any length
            data = rng.randbytes(rng.randrange(0, 1500))
        elif choice == 1:  # a real datagram with bytes flipped
            data = bytearray(rng.choice(genuine))
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            data = bytes(data)
        elif choice == 2:  # truncated or extended real datagrams
            base = rng.choice(genuine)
            data = base[: rng.randrange(len(base))] + rng.randbytes(rng.randrange(0, 3))
        else:  # well-formed headers of every type with random bodies
            kind = rng.choice([wire.TYPE_HANDSHAKE_INIT, wire.TYPE_HANDSHAKE_RESPONSE,
                               wire.TYPE_DATA, wire.TYPE_CONTROL, wire.TYPE_COOKIE_REPLY,
                               wire.TYPE_RELAY, wire.TYPE_RELAYED, *sorted(wire.THIN_FRAMES),
                               0, 11])  # fmt: skip
            size = rng.choice([wire.HANDSHAKE_INIT_LEN, wire.HANDSHAKE_RESPONSE_LEN,
                               wire.COOKIE_REPLY_LEN, 48, 200])  # fmt: skip
            data = bytes([wire.PROTOCOL_VERSION, kind]) + rng.randbytes(size - 2)
        source = (f"203.0.113.{rng.randrange(1, 255)}", rng.randrange(1, 65536))
        b.receive_datagram(data, 1, source, sim.now)
    b.process_handshakes(sim.now)
    accepted = b.accepted - accepted_before
    dropped = sum(b.drops.values()) - dropped_before
    assert accepted + dropped == TOTAL
    assert accepted <= 200, "a mutated datagram should almost never authenticate"
    # Still serving the real peer.
    sim.collect()
    sim.in_flight.clear()
    before = len(sim.delivered["b"])
    a.send_packet("8056c2e21c000001", ipv4_packet("10.1.0.1", "10.1.0.2", b"after-fuzz"), sim.now)
    sim.step()
    assert len(sim.delivered["b"]) == before + 1
