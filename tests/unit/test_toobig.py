"""Packets too large for a relay frame: ICMP "too big" or IPv4 fragments, never an oversize
relay frame (node/toobig.py, and the core's use of it through a root)."""

from __future__ import annotations

import ipaddress
import struct

from oneservice.node import wire
from oneservice.node.toobig import (
    RELAY_OVERHEAD,
    RELAYED_PACKET_MAX,
    fragment_ipv4,
    too_big_answer,
)
from oneservice.offload import internet_checksum
from tests.unit.corenet import identity
from tests.unit.test_roots import DIRECT, behind_a_root

DONT_FRAGMENT = 0x4000


def ipv4(size: int, flags: int = DONT_FRAGMENT, protocol: int = 6, body: bytes = b"") -> bytes:
    payload = (body or bytes(range(256)) * 40)[: size - 20]
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 7, flags, 64, protocol, 0,
                                   ipaddress.IPv4Address("10.1.0.1").packed,
                                   ipaddress.IPv4Address("10.1.0.2").packed))  # fmt: skip
    struct.pack_into("!H", header, 10, internet_checksum(bytes(header)))
    return bytes(header) + payload


def ipv6(size: int, next_header: int = 6, body: bytes = b"") -> bytes:
    payload = (body or bytes(range(256)) * 40)[: size - 40]
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), next_header, 64,
                       ipaddress.IPv6Address("fd00::1").packed,
                       ipaddress.IPv6Address("fd00::2").packed) + payload  # fmt: skip


def valid(data: bytes) -> bool:
    """A checksum over data that includes its own checksum field comes out as zero."""
    return internet_checksum(data) in (0, 0xFFFF)


def test_a_relay_frame_of_the_largest_relayed_packet_fits_a_1500_byte_ipv6_path():
    frame = RELAYED_PACKET_MAX + wire.DATA_OVERHEAD + RELAY_OVERHEAD
    assert frame + 40 + 8 == 1500


def test_ipv4_with_dont_fragment_is_answered_fragmentation_needed_from_its_destination():
    packet = ipv4(1420)
    answer = too_big_answer(packet, RELAYED_PACKET_MAX)
    assert answer is not None and valid(answer[:20]) and valid(answer[20:])
    assert answer[9] == 1 and answer[12:16] == packet[16:20] and answer[16:20] == packet[12:16]
    kind, code, _, _, mtu = struct.unpack_from("!BBHHH", answer, 20)
    assert (kind, code, mtu) == (3, 4, RELAYED_PACKET_MAX)
    assert answer[28:] == packet[:28], "quotes the header and 8 bytes (the ports, the seq)"


def test_ipv6_is_answered_packet_too_big_with_a_valid_checksum():
    packet = ipv6(1420)
    answer = too_big_answer(packet, RELAYED_PACKET_MAX)
    assert answer is not None and len(answer) <= 1280
    assert answer[6] == 58 and answer[8:24] == packet[24:40] and answer[24:40] == packet[8:24]
    kind, code, _, mtu = struct.unpack_from("!BBHI", answer, 40)
    assert (kind, code, mtu) == (2, 0, RELAYED_PACKET_MAX)
    pseudo = answer[8:40] + struct.pack("!I3xB", len(answer) - 40, 58)
    assert valid(pseudo + answer[40:])
    assert answer[48:] == packet[: len(answer) - 48]


def test_errors_are_never_answered_with_errors_and_non_df_ipv4_gets_none():
    assert too_big_answer(ipv4(1420, flags=0), 1383) is None
    assert too_big_answer(ipv4(1420, protocol=1, body=bytes([3, 4]) + bytes(2000)), 1383) is None
    assert too_big_answer(ipv6(1420, next_header=58, body=bytes([1]) + bytes(2000)), 1383) is None
    assert too_big_answer(ipv4(1420, flags=DONT_FRAGMENT | 5), 1383) is None  # a later fragment
    assert too_big_answer(b"", 1383) is None and too_big_answer(b"\x45" * 10, 1383) is None
    # An echo request (not an error) is answered.
    assert too_big_answer(ipv4(1420, protocol=1, body=bytes([8]) + bytes(2000)), 1383)


def test_ipv4_without_dont_fragment_is_cut_into_fragments_that_join_again():
    packet = ipv4(3000, flags=0)
    fragments = fragment_ipv4(packet, RELAYED_PACKET_MAX)
    assert fragments is not None and len(fragments) == 3
    joined = b""
    for number, fragment in enumerate(fragments):
        assert len(fragment) <= RELAYED_PACKET_MAX and valid(fragment[:20])
        total, flags = (struct.unpack_from("!H", fragment, at)[0] for at in (2, 6))
        assert total == len(fragment)
        assert (flags & 0x1FFF) * 8 == len(joined)
        assert bool(flags & 0x2000) == (number < 2)
        assert fragment[12:20] == packet[12:20] and fragment[4:6] == packet[4:6]
        joined += fragment[20:]
    assert joined == packet[20:]
    assert fragment_ipv4(ipv4(3000), RELAYED_PACKET_MAX) is None  # Don't Fragment
    assert fragment_ipv4(ipv4(1000, flags=0), RELAYED_PACKET_MAX) is None  # fits already


def test_through_a_root_a_full_size_packet_becomes_too_big_and_a_smaller_one_goes():
    sim, a, b, network = behind_a_root()
    sim.blocked.add(DIRECT)
    for _ in range(30):
        a.send_packet(network.id, ipv4(100), sim.now)
        sim.run(0.1)
    assert a.peers[b.identity.address].preferred.via == identity(3).address
    sim.delivered["a"].clear()
    sim.delivered["b"].clear()
    sim.wire_log.clear()

    a.send_packets(network.id, [(ipv4(1420), 0), (ipv4(1420), 0), (ipv4(1383), 0)], sim.now)
    a.send_packet(network.id, ipv4(1420, flags=0), sim.now)
    sim.run(0.05)
    assert a.packet_drops["too_big_relayed"] == 2
    # One answer into a's own tap per batch, from b's address, naming 1383.
    [(_, answer, _)] = sim.delivered["a"]
    assert answer[12:16] == ipaddress.IPv4Address("10.1.0.2").packed
    assert struct.unpack_from("!BBHHH", answer, 20)[::4] == (3, RELAYED_PACKET_MAX)
    arrived = [packet for _, packet, _ in sim.delivered["b"]]
    assert ipv4(1383) in arrived
    fragments = [p for p in arrived if p != ipv4(1383)]
    assert len(fragments) == 2 and sum(len(p) - 20 for p in fragments) == 1400, "the fragments"
    assert max(len(data) for _, _, data in sim.wire_log) <= 1500 - 48
