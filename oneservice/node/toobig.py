"""Packets too large for a relayed path: what they get instead of IP fragments of relay frames.

A relayed datagram travels inside a relay frame to the root (TYPE_RELAY: the root session's
32 bytes and the destination's 5), so a packet that fills the tunnel's MTU direct makes a frame
37 bytes over a 1500-byte path. Relay frames are never left to IP fragmentation (which many
NATs drop, and which UDP GSO refuses outright), so a packet over RELAYED_PACKET_MAX is answered
as a router answers a packet over its next hop's MTU:

- IPv4 with Don't Fragment (every TCP segment of Linux, macOS, Windows) and IPv6: an ICMP
  "fragmentation needed" / ICMPv6 "packet too big" naming RELAYED_PACKET_MAX, written into the
  tap as if from the packet's destination: the sender's stack lowers its path MTU at once and
  sends again (TCP within a round trip). The packet itself is dropped (counted).
- IPv4 without Don't Fragment: cut into IPv4 fragments that fit, as a router would.

Pure functions over bytes; the core decides when a path is relayed (docs/PROTOCOL.md, "MTU").
"""

from __future__ import annotations

import struct

from ..mtu import DEFAULT_TUNNEL_MTU, TUNNEL_OVERHEAD
from ..offload import internet_checksum as checksum
from .wire import ADDRESS_LEN

# What a relay frame adds to the datagram it carries: the root session's header and tag, and
# the destination's address.
RELAY_OVERHEAD = TUNNEL_OVERHEAD + ADDRESS_LEN
# The largest inner packet whose relay frame fits the 1500-byte path the default MTU assumes
# (IPv6 the worst case): 1420 - 37 = 1383.
RELAYED_PACKET_MAX = DEFAULT_TUNNEL_MTU - RELAY_OVERHEAD

_IPV4_DONT_FRAGMENT = 0x4000
_IPV4_MORE_FRAGMENTS = 0x2000
_IPV4_OFFSET_MASK = 0x1FFF
_ICMP = 1
_ICMPV6 = 58
_ICMP_UNREACHABLE, _ICMP_FRAGMENTATION_NEEDED = 3, 4
_ICMPV6_PACKET_TOO_BIG = 2
_ICMPV6_ERRORS_BELOW = 128  # ICMPv6 types under 128 are errors: never answered with another
_ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})
# An ICMPv6 error quotes as much of the packet as fits a minimum-MTU (1280) packet.
_IPV6_MIN_MTU = 1280
_TTL = 64


def too_big_answer(packet: bytes, mtu: int) -> bytes | None:
    """The ICMP error that tells ``packet``'s sender to send at most ``mtu`` bytes, as if from
    its destination; None where no such error may be sent (IPv4 without Don't Fragment, a
    fragment after the first, an ICMP error itself, or not a well-formed IP header)."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20:
        return _icmpv4_fragmentation_needed(packet, mtu)
    if version == 6 and len(packet) >= 40:
        return _icmpv6_packet_too_big(packet, mtu)
    return None


def fragment_ipv4(packet: bytes, mtu: int) -> list[bytes] | None:
    """An IPv4 packet without Don't Fragment cut into fragments of at most ``mtu`` bytes, as a
    router does; None if it may not be cut (Don't Fragment, IP options, malformed)."""
    if len(packet) < 20 or packet[0] != 0x45:
        return None  # options would need per-fragment copying rules: not worth it here
    (total,) = struct.unpack_from("!H", packet, 2)
    (flags,) = struct.unpack_from("!H", packet, 6)
    if flags & _IPV4_DONT_FRAGMENT or total != len(packet) or total <= mtu:
        return None
    payload = packet[20:]
    step = (mtu - 20) // 8 * 8
    first_offset = flags & _IPV4_OFFSET_MASK
    fragments = []
    for at in range(0, len(payload), step):
        piece = payload[at : at + step]
        last = at + step >= len(payload)
        more = (flags & _IPV4_MORE_FRAGMENTS) if last else _IPV4_MORE_FRAGMENTS
        header = bytearray(packet[:20])
        struct.pack_into("!H", header, 2, 20 + len(piece))
        struct.pack_into("!H", header, 6, more | (first_offset + at // 8))
        struct.pack_into("!H", header, 10, 0)
        struct.pack_into("!H", header, 10, checksum(bytes(header)))
        fragments.append(bytes(header) + piece)
    return fragments


def _icmpv4_fragmentation_needed(packet: bytes, mtu: int) -> bytes | None:
    header_len = (packet[0] & 0x0F) * 4
    (flags,) = struct.unpack_from("!H", packet, 6)
    if header_len < 20 or len(packet) < header_len or not flags & _IPV4_DONT_FRAGMENT:
        return None
    if flags & _IPV4_OFFSET_MASK:
        return None  # only the first fragment is answered
    if packet[9] == _ICMP and len(packet) > header_len and packet[header_len] in _ICMP_ERROR_TYPES:
        return None
    quoted = packet[: header_len + 8]
    icmp = bytearray(struct.pack("!BBHHH", _ICMP_UNREACHABLE, _ICMP_FRAGMENTATION_NEEDED, 0, 0,
                                 mtu) + quoted)  # fmt: skip
    struct.pack_into("!H", icmp, 2, checksum(bytes(icmp)))
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, _TTL, _ICMP,
                                   0, packet[16:20], packet[12:16]))  # fmt: skip
    struct.pack_into("!H", header, 10, checksum(bytes(header)))
    return bytes(header) + bytes(icmp)


def _icmpv6_packet_too_big(packet: bytes, mtu: int) -> bytes | None:
    if packet[6] == _ICMPV6 and len(packet) > 40 and packet[40] < _ICMPV6_ERRORS_BELOW:
        return None
    source, destination = packet[24:40], packet[8:24]  # the answer's: from the destination
    quoted = packet[: _IPV6_MIN_MTU - 48]
    icmp = bytearray(struct.pack("!BBHI", _ICMPV6_PACKET_TOO_BIG, 0, 0, mtu) + quoted)
    pseudo = source + destination + struct.pack("!I3xB", len(icmp), _ICMPV6)
    struct.pack_into("!H", icmp, 2, checksum(pseudo + bytes(icmp)))
    header = struct.pack("!IHBB16s16s", 0x60000000, len(icmp), _ICMPV6, _TTL, source, destination)
    return header + bytes(icmp)
