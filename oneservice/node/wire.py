"""The UDP wire format (docs/PROTOCOL.md). Every datagram starts with version and type.

    handshake initiation  : ver type 00 00 | sender index (4) | Noise message 1 | mac1 | mac2
    handshake response    : ver type 00 00 | sender index (4) | receiver index (4) | message 2
    cookie reply          : ver type 00 00 | receiver index (4) | nonce (12) | sealed cookie
    data / control        : ver type hint (2) | receiver index (4) | counter (8) | AEAD ciphertext

A data packet's hint is 0 when its checksums are complete; otherwise its TCP or UDP checksum
field holds only the pseudo-header sum (a TUN offload, oneservice/offload.py): the low
byte is the field's offset in the transport header (16 or 6), the high byte the transport
header's start in 2-byte units. Control messages carry 0.

Integers are little-endian. The 16-byte data header is the AEAD's associated data, so the
type, index and counter are authenticated with the payload.
"""

from __future__ import annotations

import struct

from .. import native
from ..offload import hint_fits
from .cookies import COOKIE_LEN, MACS_LEN, NONCE_LEN
from .noise import MESSAGE_1_OVERHEAD, MESSAGE_2_OVERHEAD, TAG_LEN

PROTOCOL_VERSION = 1
TYPE_HANDSHAKE_INIT = 1
TYPE_HANDSHAKE_RESPONSE = 2
TYPE_DATA = 3  # payload: one IP packet
TYPE_CONTROL = 4  # payload: one msgpack control message
TYPE_RELAY = 5  # to a root: payload = destination address (5 bytes) + a datagram for it
TYPE_RELAYED = 6  # from a root: payload = source address (5 bytes) + a datagram from it
TYPE_COOKIE_REPLY = 7  # "prove your address first": node/cookies.py
TYPE_CONTROL_CHUNK = 8  # as control; payload: one chunk of a larger message (node/chunks.py)
# Thin relay frames: as 5 and 6 for a data datagram, which is sealed end to end already, so
# only the address is encrypted (docs/PROTOCOL.md); for a root that says it takes them.
TYPE_RELAY_THIN = 9
TYPE_RELAYED_THIN = 10
THIN_FRAMES = frozenset({TYPE_RELAY_THIN, TYPE_RELAYED_THIN})
ADDRESS_LEN = 5

PROLOGUE = b"oneservice protocol 1"
HANDSHAKE_INIT_HEADER = struct.Struct("<BBHI")
HANDSHAKE_RESPONSE_HEADER = struct.Struct("<BBHII")
DATA_HEADER = struct.Struct("<BBHIQ")
DATA_HEADER_LEN = DATA_HEADER.size  # 16
TIMESTAMP_LEN = 12  # seconds (8) + nanoseconds (4), big-endian like TAI64N: sorts as bytes
# The initiation's payload: the timestamp, then the initiator's Ed25519 public key. With the
# X25519 key from the handshake that is its whole public identity, so a root or controller can
# accept a node it has never heard of (and derive its address).
INITIATION_PAYLOAD_LEN = TIMESTAMP_LEN + 32
HANDSHAKE_INIT_BODY_LEN = HANDSHAKE_INIT_HEADER.size + MESSAGE_1_OVERHEAD + INITIATION_PAYLOAD_LEN
HANDSHAKE_INIT_LEN = HANDSHAKE_INIT_BODY_LEN + MACS_LEN
COOKIE_REPLY_HEADER = struct.Struct("<BBHI")
COOKIE_REPLY_LEN = COOKIE_REPLY_HEADER.size + NONCE_LEN + COOKIE_LEN + TAG_LEN
HANDSHAKE_RESPONSE_LEN = HANDSHAKE_RESPONSE_HEADER.size + MESSAGE_2_OVERHEAD
DATA_OVERHEAD = DATA_HEADER_LEN + TAG_LEN  # 32 bytes per tunnelled packet
MAX_DATAGRAM_LEN = 65535


def split_coalesced(data: bytes, size: int) -> list[bytes]:
    """The datagrams in one UDP GRO read: ``size`` bytes each, the last maybe shorter."""
    if size <= 0 or len(data) <= size:
        return [data]
    return [data[offset : offset + size] for offset in range(0, len(data), size)]


def address_bytes(packet: bytes | memoryview, source: bool) -> bytes | None:
    """The packed source or destination address of an IPv4/IPv6 packet; None if malformed."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        return bytes(packet[12:16] if source else packet[16:20])
    if version == 6 and len(packet) >= 40:
        return bytes(packet[8:24] if source else packet[24:40])
    return None


# Inner packets by address, for the core to check or route once per run instead of once per
# packet: consecutive packets with the same address form a run, (address, [(packet, hint)]).
# Each has a C twin in the data path's extension (oneservice/native.py chooses).

Runs = list[tuple[bytes, list[tuple[bytes, int]]]]


def python_by_source(packets: list[tuple[bytes, int]]) -> tuple[Runs, int]:
    """Packets that arrived, in runs of one source address; and how many were malformed (no
    IP header, or a hint that does not fit: left out)."""
    runs, malformed, _ = _runs_by_address(packets, True, 0)
    return runs, malformed


def python_by_destination(packets: list[tuple[bytes, int]], mtu: int) -> tuple[Runs, int, int]:
    """Packets to send, in runs of one destination address; and how many were left out as
    malformed (no IP header) and as longer than ``mtu``."""
    return _runs_by_address(packets, False, mtu)


def _runs_by_address(packets: list[tuple[bytes, int]], source: bool,
                     mtu: int) -> tuple[Runs, int, int]:  # fmt: skip
    runs: Runs = []
    malformed, oversize, last, run = 0, 0, None, []
    for packet, hint in packets:
        address = address_bytes(packet, source)
        if address is None or (source and hint and not hint_fits(packet, hint)):
            malformed += 1
            continue
        if not source and len(packet) > mtu:
            oversize += 1
            continue
        if address != last:
            last, run = address, []
            runs.append((address, run))
        run.append((packet, hint))
    return runs, malformed, oversize


if native.EXTENSION is not None:
    by_source, by_destination = native.EXTENSION.by_source, native.EXTENSION.by_destination
else:
    by_source, by_destination = python_by_source, python_by_destination


def encode_timestamp(seconds: float) -> bytes:
    whole = int(seconds)
    return whole.to_bytes(8, "big") + int((seconds - whole) * 1e9).to_bytes(4, "big")


def handshake_init(sender_index: int, message: bytes) -> bytes:
    return HANDSHAKE_INIT_HEADER.pack(PROTOCOL_VERSION, TYPE_HANDSHAKE_INIT, 0, sender_index) + (
        message
    )


def handshake_response(sender_index: int, receiver_index: int, message: bytes) -> bytes:
    return (
        HANDSHAKE_RESPONSE_HEADER.pack(
            PROTOCOL_VERSION, TYPE_HANDSHAKE_RESPONSE, 0, sender_index, receiver_index
        )
        + message
    )


def cookie_reply(receiver_index: int, nonce: bytes, sealed_cookie: bytes) -> bytes:
    return (
        COOKIE_REPLY_HEADER.pack(PROTOCOL_VERSION, TYPE_COOKIE_REPLY, 0, receiver_index)
        + nonce
        + sealed_cookie
    )
