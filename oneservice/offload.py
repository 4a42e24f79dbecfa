"""TUN offloads (Linux ``IFF_VNET_HDR``), as pure functions over bytes: below the node and
the tap, which both use it (the core seals super-packets whole).

With offloads on, the kernel hands a TUN reader TCP "super-packets" of up to 64 KiB (one read
instead of ~45) and leaves TCP/UDP checksums unfinished; a writer may hand it super-packets
back (one write instead of ~45) whose checksum it need not verify. Every frame on the device
starts with a 10-byte ``virtio_net_hdr`` saying which of this applies.

Sending, we cut super-packets into MTU-sized TCP segments and leave their checksums partial:
the pseudo-header sum is in the checksum field and the wire header says where that field is
(a *partial hint*, see ``docs/PROTOCOL.md``), so no Python code sums payload bytes. The
receiver's kernel finishes or skips the sum; a receiver without offloads finishes it here.
Receiving, consecutive segments of one TCP flow are merged again (as the kernel's GRO does)
and written as one super-packet.

The cutting and the merging have a C twin in the data path's extension (oneservice/native.py
chooses; the same bytes, a merged frame as one buffer instead of a list of pieces), and so
does writing the merged frames (the C one writes each frame's pieces where they lie).

A partial hint (node/wire.py) is an int that fits the two bytes the data header has for it:
``(checksum_start // 2) << 8 | checksum_offset``, 0 when the checksum is complete.
"""

from __future__ import annotations

import dataclasses
import os
import struct

from . import native

__all__ = [
    "OffloadError", "SuperPacket", "finish_checksum", "hint_fits", "merge", "partial_hint",
    "read_frame", "split_frame", "write_merged",
]  # fmt: skip

VNET_HDR = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_HDR_LEN = VNET_HDR.size
NEEDS_CSUM = 0x01
GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_ECN = 0, 1, 4, 0x80
# One IP packet's length field is 16 bits: a merged packet must fit.
MAX_MERGED_BYTES = 65535
IOV_MAX = 1024  # the pieces one writev takes (Linux's UIO_MAXIOV)

_FIN, _PSH, _ACK, _CWR = 0x01, 0x08, 0x10, 0x80
_PLAIN_HEADER = VNET_HDR.pack(0, GSO_NONE, 0, 0, 0, 0)
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_LENGTH_AND_ID = struct.Struct("!HH")


TCP_CHECKSUM_OFFSET = 16
UDP_CHECKSUM_OFFSET = 6
CHECKSUM_OFFSETS = (TCP_CHECKSUM_OFFSET, UDP_CHECKSUM_OFFSET)


def partial_hint(start: int, offset: int) -> int:
    """The hint for a checksum field at ``start + offset``; 0 if it cannot be expressed."""
    if start & 1 or start > 510 or offset not in CHECKSUM_OFFSETS:
        return 0
    return (start >> 1) << 8 | offset


def hint_fits(packet: bytes, hint: int) -> bool:
    """Whether a hint from the wire points at a transport header inside this IP packet.
    Peers are not trusted blindly: a start inside the IP header would let the kernel's
    checksum overwrite the source address after we checked it."""
    start, offset = (hint >> 8) * 2, hint & 0xFF
    if offset not in CHECKSUM_OFFSETS or start + offset + 2 > len(packet):
        return False
    return start == (packet[0] & 0x0F) * 4 if packet[0] >> 4 == 4 else start >= 40


class OffloadError(ValueError):
    """A frame from the kernel that we cannot cut into packets (counted, then dropped)."""


def _ones_sum(data: bytes) -> int:
    """The 16-bit ones' complement sum, mod 0xffff: 2**16 is 1 mod 0xffff, so the number the
    bytes spell is congruent to the sum of their 16-bit words (one C loop instead of many)."""
    if len(data) & 1:
        data = bytes(data) + b"\0"
    return int.from_bytes(data, "big") % 0xFFFF


def _checksum(ones_sum: int) -> int:
    """The checksum field for data whose ones' complement sum (mod 0xffff) is given."""
    return 0xFFFF - (ones_sum % 0xFFFF or 0xFFFF)


def internet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) field for ``data`` (its own field counted as 0)."""
    return _checksum(_ones_sum(data))


def _pseudo_sum(packet: bytes) -> int:
    """The TCP pseudo-header's addresses and protocol; the caller adds the TCP length."""
    return _ones_sum(packet[12:20] if packet[0] >> 4 == 4 else packet[8:40]) + 6


def finish_checksum(packet: bytes, hint: int) -> bytes:
    """Complete a partial checksum in software (for a device without offloads)."""
    return _finish(packet, (hint >> 8) * 2, hint & 0xFF)


def _finish(packet: bytes, start: int, offset: int) -> bytes:
    checksum = _checksum(_ones_sum(packet[start:]))  # the field holds the pseudo-header sum
    if checksum == 0 and offset == UDP_CHECKSUM_OFFSET:
        checksum = 0xFFFF  # in UDP, 0 means "no checksum"
    at = start + offset
    return packet[:at] + _U16.pack(checksum) + packet[at + 2 :]


def split_frame(frame: bytes) -> list[tuple[bytes, int]]:
    """A frame read from the device: its IP packets, each with its partial hint."""
    if len(frame) < VNET_HDR_LEN:
        raise OffloadError("frame shorter than its header")
    flags, gso_type, _, gso_size, start, offset = VNET_HDR.unpack_from(frame)
    packet = frame[VNET_HDR_LEN:]
    if not flags & NEEDS_CSUM:
        if gso_type != GSO_NONE:
            raise OffloadError("super-packet without a partial checksum")
        return [(packet, 0)]
    if offset not in CHECKSUM_OFFSETS or start + offset + 2 > len(packet):
        raise OffloadError(f"checksum field at {start}+{offset} is not one we know")
    if gso_type == GSO_NONE:
        packets = [(packet, partial_hint(start, offset))]
    elif gso_type & ~GSO_ECN in (GSO_TCPV4, GSO_TCPV6) and gso_size and offset == 16:
        packets = _cut(packet, start, gso_size, gso_type & GSO_ECN != 0)
    else:
        raise OffloadError(f"unsupported segmentation type {gso_type}")
    if packets[0][1]:
        return packets
    # A start our wire header cannot carry (long IPv6 extension headers): finish it here.
    return [(_finish(packet, start, offset), 0) for packet, _ in packets]


@dataclasses.dataclass(frozen=True, slots=True)
class SuperPacket:
    """A TCP super-packet from the device, checked but not cut yet: the core can seal its
    segments in one call without making them (Session.seal_super); ``segments()`` cuts it
    as split_frame would."""

    packet: memoryview  # the IP packet where it lies in the frame read (64 KiB: not copied)
    start: int  # of the TCP header
    size: int  # payload bytes per segment (all but a shorter last one)
    ecn: bool
    header_len: int  # IP and TCP headers, repeated in each segment
    count: int  # segments

    def segments(self) -> list[tuple[bytes, int]]:
        return _cut(self.packet, self.start, self.size, self.ecn)


def read_frame(frame: bytes) -> list[tuple[bytes, int]] | SuperPacket:
    """As split_frame, except that a TCP super-packet whose partial hint the wire header can
    carry comes back uncut, as a SuperPacket."""
    if len(frame) >= VNET_HDR_LEN:
        flags, gso_type, _, gso_size, start, offset = VNET_HDR.unpack_from(frame)
        if (
            flags & NEEDS_CSUM and gso_type & ~GSO_ECN in (GSO_TCPV4, GSO_TCPV6) and gso_size
            and offset == TCP_CHECKSUM_OFFSET and partial_hint(start, offset)
            and start + offset + 2 <= len(frame) - VNET_HDR_LEN
        ):  # fmt: skip
            packet = memoryview(frame)[VNET_HDR_LEN:]
            header_len = _tcp_header_end(packet, start)
            count = (len(packet) - header_len - 1) // gso_size + 1
            return SuperPacket(packet, start, gso_size, gso_type & GSO_ECN != 0, header_len, count)
    return split_frame(frame)


def _tcp_header_end(packet: bytes, start: int) -> int:
    """Where a super-packet's TCP header ends, once it is checked to be where it must be."""
    version = packet[0] >> 4
    expected_start = (packet[0] & 0x0F) * 4 if version == 4 else 40
    if (
        start + 20 > len(packet)
        or start < expected_start
        or (version == 4 and start != expected_start)
    ):
        raise OffloadError("TCP header not where the super-packet says")
    header_len = start + (packet[start + 12] >> 4) * 4
    if header_len < start + 20:
        raise OffloadError("TCP header shorter than its fixed part")
    if header_len >= len(packet):
        raise OffloadError("TCP super-packet without payload")
    return header_len


def python_segment(packet: bytes, start: int, size: int, ecn: bool) -> list[tuple[bytes, int]]:
    """Cut a TCP super-packet into segments of ``size`` payload bytes, as the NIC would."""
    version = packet[0] >> 4
    header_len = _tcp_header_end(packet, start)
    header = bytearray(packet[:header_len])
    payload = memoryview(packet)[header_len:]
    pseudo = _pseudo_sum(packet)
    seq = _U32.unpack_from(packet, start + 4)[0]
    flags = packet[start + 13]
    hint = partial_hint(start, TCP_CHECKSUM_OFFSET)
    total = len(payload)
    if version == 4:
        # Only the length and the ID change from segment to segment: the header's checksum
        # is the sum of the rest, taken once, plus those two.
        first_id = _U16.unpack_from(packet, 4)[0]
        header[2:6] = b"\0\0\0\0"
        header[10:12] = b"\0\0"
        rest = _ones_sum(header[:start])
    last_at = (total - 1) // size * size
    segments = []
    for number, at in enumerate(range(0, total, size)):
        last = at == last_at
        length = header_len + (total - at if last else size)
        if version == 4:
            ip_id = (first_id + number) & 0xFFFF
            _LENGTH_AND_ID.pack_into(header, 2, length, ip_id)
            _U16.pack_into(header, 10, _checksum(rest + length + ip_id))
        else:
            _U16.pack_into(header, 4, length - 40)
        _U32.pack_into(header, start + 4, (seq + at) & 0xFFFFFFFF)
        segment_flags = flags if last else flags & ~(_FIN | _PSH)
        header[start + 13] = segment_flags & ~_CWR if ecn and number else segment_flags
        _U16.pack_into(header, start + 16, (pseudo + length - start) % 0xFFFF)
        segments.append((b"".join((header, payload[at : at + size])), hint))
    return segments


def python_merge(packets: list[tuple[bytes, int]]) -> list[list[bytes]]:
    """Packets for the device (in order) as frames, each a list of buffers for one writev.

    Consecutive full-sized segments of one TCP flow become one super-packet whose checksum
    the kernel is told not to verify: they came through an authenticated tunnel, and a TCP
    sender's kernel made them. Order within each flow is kept; flows may interleave. Only
    plain TCP merges: no IPv4 options or fragments, no IPv6 extension headers."""
    frames: list[list[bytes]] = []
    open_flows: dict[bytes, _Flow] = {}
    merged: list[_Flow] = []
    for packet, hint in packets:
        length = len(packet)
        version = packet[0] if length >= 40 else 0
        if (
            version == 0x45 and packet[9] == 6 and not (packet[6] & 0x3F or packet[7])
            and _U16.unpack_from(packet, 2)[0] == length
        ):  # fmt: skip
            start, key = 20, packet[12:24]
        elif (
            version >> 4 == 6 and length >= 60 and packet[6] == 6
            and _U16.unpack_from(packet, 4)[0] == length - 40
        ):  # fmt: skip
            start, key = 40, packet[8:44]
        else:
            frames.append(_single(packet, hint))
            continue
        header_len = start + (packet[start + 12] >> 4) * 4
        size = length - header_len
        if size < 0 or header_len < start + 20:
            frames.append(_single(packet, hint))
            continue
        seq, flags = _U32.unpack_from(packet, start + 4)[0], packet[start + 13]
        flow = open_flows.get(key)
        if flow is not None:
            if flow.takes(packet, header_len, seq, size, flags):
                if flow.count == 1:
                    merged.append(flow)
                flow.add(packet, header_len, size, flags)
                if flow.closed:
                    del open_flows[key]
                continue
            del open_flows[key]  # a later segment must not pass this packet
        if not size or flags & ~(_ACK | _PSH) or not flags & _ACK:
            frames.append(_single(packet, hint))
            continue
        flow = _Flow(packet, hint, start, header_len, seq, size, flags)
        frames.append(flow.buffers)
        if not flow.closed:
            open_flows[key] = flow
    for flow in merged:
        flow.write_headers()
    return frames


def _single(packet: bytes, hint: int) -> list[bytes]:
    if not hint:
        return [_PLAIN_HEADER, packet]
    return [VNET_HDR.pack(NEEDS_CSUM, GSO_NONE, 0, 0, (hint >> 8) * 2, hint & 0xFF), packet]


class _Flow:
    """A super-packet being built from consecutive segments of one flow."""

    __slots__ = ("ack", "buffers", "closed", "count", "first", "header_len", "next_seq",
                 "options", "push", "size", "start", "total")  # fmt: skip

    def __init__(self, packet, hint, start, header_len, seq, size, flags) -> None:
        self.first = packet
        self.start = start
        self.header_len = header_len
        # Acknowledgement and options must be the same in every merged segment.
        self.ack = packet[start + 8 : start + 12]
        self.options = packet[start + 20 : header_len]
        self.size = size
        self.next_seq = (seq + size) & 0xFFFFFFFF
        self.total = len(packet)
        self.count = 1
        self.push = flags & _PSH
        self.closed = bool(self.push)
        # Until a second segment comes this is the packet as it arrived.
        self.buffers = _single(packet, hint)

    def takes(self, packet: bytes, header_len: int, seq: int, size: int, flags: int) -> bool:
        if (
            seq != self.next_seq or not 0 < size <= self.size or flags & ~(_ACK | _PSH)
            or header_len != self.header_len or self.total + size > MAX_MERGED_BYTES
        ):  # fmt: skip
            return False
        first, start = self.first, self.start
        if start == 20:  # IPv4: TOS, DF and TTL
            same_outer = packet[1] == first[1] and packet[6] == first[6] and packet[8] == first[8]
        else:  # IPv6: traffic class and flow label, hop limit
            same_outer = packet[7] == first[7] and packet[:4] == first[:4]
        return (
            same_outer and packet[start + 8 : start + 12] == self.ack
            and (header_len == start + 20 or packet[start + 20 : header_len] == self.options)
        )  # fmt: skip

    def add(self, packet: bytes, header_len: int, size: int, flags: int) -> None:
        if self.count == 1:
            self.buffers[1:] = [b"", self.first[self.header_len :]]
        self.buffers.append(packet[header_len:])
        self.count += 1
        self.total += size
        self.next_seq = (self.next_seq + size) & 0xFFFFFFFF
        self.push = flags & _PSH
        self.closed = bool(self.push) or size < self.size

    def write_headers(self) -> None:
        """Once every segment is in: the headers of the merged packet."""
        start, header_len, first = self.start, self.header_len, self.first
        header = bytearray(first[:header_len])
        if first[0] >> 4 == 4:
            _U16.pack_into(header, 2, self.total)
            header[10:12] = b"\0\0"
            _U16.pack_into(header, 10, _checksum(_ones_sum(header[:start])))
            gso_type = GSO_TCPV4
        else:
            _U16.pack_into(header, 4, self.total - 40)
            gso_type = GSO_TCPV6
        header[start + 13] |= self.push
        _U16.pack_into(header, start + 16, (_pseudo_sum(first) + self.total - start) % 0xFFFF)
        self.buffers[0] = VNET_HDR.pack(
            NEEDS_CSUM, gso_type, header_len, self.size, start, TCP_CHECKSUM_OFFSET
        )
        self.buffers[1] = bytes(header)


def python_write_merged(fd: int, packets: list[tuple[bytes, int]]) -> tuple[int, int]:
    """``python_merge``'s frames written to the device ``fd``, one writev each: (frames,
    failed). A write the kernel refuses (a full queue, a packet it will not take) is counted,
    never raised into the core."""
    frames = python_merge(packets)
    failed = 0
    for buffers in frames:
        if len(buffers) > IOV_MAX:  # (a flow of tiny segments: more than one writev takes)
            buffers = [b"".join(buffers)]
        try:
            os.writev(fd, buffers)
        except OSError:
            failed += 1
    return len(frames), failed


def _native_segment(packet: bytes, start: int, size: int, ecn: bool) -> list[tuple[bytes, int]]:
    try:
        return native.EXTENSION.segment(packet, start, size, ecn)
    except ValueError as exc:
        raise OffloadError(str(exc)) from None


if native.EXTENSION is not None:
    _cut, merge = _native_segment, native.EXTENSION.merge
    write_merged = native.EXTENSION.write_merged
else:
    _cut, merge, write_merged = python_segment, python_merge, python_write_merged
