"""TUN offloads: super-packets cut into segments and merged back, checked against a plain
word-by-word checksum written here independently of the module's shortcut."""

from __future__ import annotations

import ipaddress
import os
import struct

import pytest

from oneservice import offload
from oneservice.offload import (
    GSO_ECN,
    GSO_TCPV4,
    GSO_TCPV6,
    NEEDS_CSUM,
    VNET_HDR,
    OffloadError,
    finish_checksum,
    hint_fits,
    merge,
    partial_hint,
    split_frame,
)

V4 = ("10.147.0.1", "10.147.0.2")
V6 = ("fd00::1", "fd00::2")
ACK, PSH, FIN, CWR = 0x10, 0x08, 0x01, 0x80


def reference_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def pseudo_header(packet: bytes, start: int, protocol: int = 6) -> bytes:
    length = len(packet) - start
    if packet[0] >> 4 == 4:
        return packet[12:20] + struct.pack("!BBH", 0, protocol, length)
    return packet[8:40] + struct.pack("!IxxxB", length, protocol)


def assert_valid(packet: bytes, start: int, protocol: int = 6) -> None:
    if packet[0] >> 4 == 4:
        assert reference_sum(packet[:start]) == 0xFFFF, "IPv4 header checksum"
        assert struct.unpack_from("!H", packet, 2)[0] == len(packet)
    else:
        assert struct.unpack_from("!H", packet, 4)[0] == len(packet) - 40
    assert reference_sum(pseudo_header(packet, start, protocol) + packet[start:]) == 0xFFFF


def tcp_packet(
    family: int, payload: bytes, seq: int = 1000, flags: int = ACK, ack: int = 77,
    options: bytes = b"", addresses: tuple[str, str] | None = None, ports=(40000, 5201),
) -> bytes:  # fmt: skip
    """A TCP packet whose checksum field holds the pseudo-header sum, as the kernel leaves it."""
    source, destination = addresses or (V4 if family == 4 else V6)
    tcp = struct.pack("!HHIIBBHHH", *ports, seq, ack, (5 + len(options) // 4) << 4, flags,
                      500, 0, 0) + options  # fmt: skip
    src, dst = ipaddress.ip_address(source).packed, ipaddress.ip_address(destination).packed
    if family == 4:
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(tcp) + len(payload), 0x1234, 0x4000,
                         64, 6, 0) + src + dst  # fmt: skip
        ip = ip[:10] + struct.pack("!H", 0xFFFF - reference_sum(ip)) + ip[12:]
    else:
        ip = struct.pack("!IHBB", 6 << 28, len(tcp) + len(payload), 6, 64) + src + dst
    packet = ip + tcp + payload
    start = len(ip)
    pseudo = reference_sum(pseudo_header(packet, start))
    return packet[: start + 16] + struct.pack("!H", pseudo) + packet[start + 18 :]


def finished(packet: bytes, hint: int) -> bytes:
    return finish_checksum(packet, hint) if hint else packet


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("flags", [ACK, ACK | PSH, ACK | PSH | FIN])
def test_a_super_packet_becomes_valid_segments(family: int, flags: int) -> None:
    payload = os.urandom(1380 * 10 + 123)
    packet = tcp_packet(family, payload, seq=2**32 - 5000, flags=flags)  # seq wraps
    start = 20 if family == 4 else 40
    gso = GSO_TCPV4 if family == 4 else GSO_TCPV6
    frame = VNET_HDR.pack(NEEDS_CSUM, gso, start + 20, 1380, start, 16) + packet

    segments = split_frame(frame)

    assert len(segments) == 11
    rebuilt = b""
    for number, (segment, hint) in enumerate(segments):
        assert hint == partial_hint(start, 16)
        assert len(segment) == start + 20 + (1380 if number < 10 else 123)
        assert_valid(finish_checksum(segment, hint), start)
        seq = struct.unpack_from("!I", segment, start + 4)[0]
        assert seq == (2**32 - 5000 + 1380 * number) % 2**32
        segment_flags = segment[start + 13]
        assert segment_flags == (flags if number == 10 else ACK)
        if family == 4:
            assert struct.unpack_from("!H", segment, 4)[0] == 0x1234 + number
        rebuilt += segment[start + 20 :]
    assert rebuilt == payload


def test_ecn_keeps_cwr_on_the_first_segment_only() -> None:
    packet = tcp_packet(4, bytes(3000), flags=ACK | CWR)
    frame = VNET_HDR.pack(NEEDS_CSUM, GSO_TCPV4 | GSO_ECN, 40, 1000, 20, 16) + packet
    flags = [segment[33] for segment, _ in split_frame(frame)]
    assert flags == [ACK | CWR, ACK, ACK]


def test_a_plain_frame_passes_with_or_without_a_partial_checksum() -> None:
    packet = tcp_packet(4, b"hello")
    assert split_frame(VNET_HDR.pack(NEEDS_CSUM, 0, 0, 0, 20, 16) + packet) == [
        (packet, partial_hint(20, 16))
    ]
    assert split_frame(VNET_HDR.pack(0, 0, 0, 0, 0, 0) + b"\x45abc") == [(b"\x45abc", 0)]


def test_a_checksum_start_the_wire_cannot_carry_is_finished_before_sending() -> None:
    # An IPv6 packet with 512 bytes of extension headers before UDP: start 552 > 510.
    udp = struct.pack("!HHHH", 1, 2, 12, 0) + b"data"
    packet = struct.pack("!IHBB", 6 << 28, 512 + len(udp), 0, 64) + bytes(32) + bytes(512) + udp
    [(sent, hint)] = split_frame(VNET_HDR.pack(NEEDS_CSUM, 0, 0, 0, 552, 6) + packet)
    assert hint == 0
    assert reference_sum(sent[552:]) != 0  # the field was filled in


@pytest.mark.parametrize(
    "frame",
    [
        b"\x01\x00",
        VNET_HDR.pack(NEEDS_CSUM, 0, 0, 0, 60, 16) + bytes(40),  # field beyond the end
        VNET_HDR.pack(NEEDS_CSUM, 0, 0, 0, 20, 9) + bytes(40),  # not TCP's or UDP's offset
        VNET_HDR.pack(NEEDS_CSUM, 3, 0, 1000, 20, 6) + bytes(60),  # UDP fragmentation
        VNET_HDR.pack(0, GSO_TCPV4, 40, 1000, 20, 16) + bytes(60),  # TSO, checksum complete
        VNET_HDR.pack(NEEDS_CSUM, GSO_TCPV4, 40, 1000, 24, 16) + tcp_packet(4, bytes(3000)),
        VNET_HDR.pack(NEEDS_CSUM, GSO_TCPV4, 40, 1000, 20, 16) + tcp_packet(4, b""),  # no data
    ],
)
def test_frames_we_cannot_cut_are_refused(frame: bytes) -> None:
    with pytest.raises(OffloadError):
        split_frame(frame)


def unpack_frame(buffers: list[bytes]) -> tuple[tuple, bytes]:
    data = b"".join(bytes(b) for b in buffers)
    return VNET_HDR.unpack_from(data), data[offload.VNET_HDR_LEN :]


def merged_count(buffers: list[bytes]) -> int:
    """How many segments a frame from merge() carries (the frame's pieces do not say: the C
    twin gives one buffer, the Python one a list): all of gso_size but a shorter last one."""
    (_, gso, header_len, gso_size, _, _), packet = unpack_frame(buffers)
    return -(-(len(packet) - header_len) // gso_size) if gso else 1


def segments(family: int, count: int, size: int = 1380, seq: int = 1000, **kwargs) -> list:
    out = []
    for number in range(count):
        packet = tcp_packet(family, os.urandom(size), seq=seq + number * size, **kwargs)
        out.append((packet, partial_hint(20 if family == 4 else 40, 16)))
    return out


@pytest.mark.parametrize("family", [4, 6])
def test_consecutive_segments_merge_into_one_valid_super_packet(family: int) -> None:
    parts = segments(family, 8) + segments(family, 1, size=200, seq=1000 + 8 * 1380)
    start = 20 if family == 4 else 40

    [buffers] = merge(parts)

    (flags, gso, header_len, gso_size, csum_start, csum_offset), packet = unpack_frame(buffers)
    assert (flags, gso) == (NEEDS_CSUM, GSO_TCPV4 if family == 4 else GSO_TCPV6)
    assert (header_len, gso_size, csum_start, csum_offset) == (start + 20, 1380, start, 16)
    assert packet[start + 20 :] == b"".join(p[start + 20 :] for p, _ in parts)
    assert_valid(finish_checksum(packet, partial_hint(start, 16)), start)
    assert struct.unpack_from("!I", packet, start + 4)[0] == 1000


def test_merging_stops_where_the_kernel_would() -> None:
    run = segments(4, 3)
    gap = segments(4, 2, seq=1000 + 10 * 1380)  # a lost segment before these
    other_ack = segments(4, 1, seq=1000 + 12 * 1380, ack=78)
    pushed = segments(4, 2, seq=1000 + 13 * 1380, flags=ACK | PSH)
    frames = merge(run + gap + other_ack + pushed)
    # 3 merged | 2 merged | 1 alone (ack differs) | a pushed segment ends its frame: 1, 1
    assert [merged_count(buffers) for buffers in frames] == [3, 2, 1, 1, 1]


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("field", ["ttl", "tos", "options"])
def test_segments_whose_headers_differ_do_not_merge(family: int, field: str) -> None:
    timestamps = bytes.fromhex("0101080a00000001000000aa")
    first, second = segments(family, 2, options=timestamps)
    packet = bytearray(second[0])
    start = 20 if family == 4 else 40
    if field == "options":
        packet[start + 31] ^= 1  # another timestamp echo
    elif family == 4:
        packet[8 if field == "ttl" else 1] ^= 1
    else:
        packet[7 if field == "ttl" else 1] ^= 1
    assert len(merge([first, (bytes(packet), second[1])])) == 2
    assert len(merge([first, second])) == 1, "unchanged, they merge"


def test_interleaved_flows_merge_separately_and_keep_their_order() -> None:
    a = segments(4, 4)
    b = segments(4, 4, ports=(40001, 5201))
    fin = tcp_packet(4, b"", seq=1000 + 4 * 1380, flags=ACK | FIN)
    interleaved = [a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3], (fin, 0)]
    frames = merge(interleaved)
    assert len(frames) == 3
    _, first = unpack_frame(frames[0])
    _, second = unpack_frame(frames[1])
    assert first[20 + 20 :] == b"".join(p[40:] for p, _ in a)
    assert second[20 + 20 :] == b"".join(p[40:] for p, _ in b)
    assert unpack_frame(frames[2])[1] == fin


def test_a_packet_that_cannot_merge_closes_its_flow_so_nothing_overtakes_it() -> None:
    a = segments(4, 3)
    window_probe = tcp_packet(4, b"", seq=1000 + 1380, flags=ACK)  # pure ACK of the same flow
    frames = merge([a[0], (window_probe, 0), a[1], a[2]])
    assert [unpack_frame(f)[1] for f in frames[:2]] == [a[0][0], window_probe]
    assert len(frames) == 3  # a[1] and a[2] merge after the ACK, not into a[0]


def test_a_merged_packet_never_exceeds_the_ip_length_limit() -> None:
    frames = merge(segments(4, 60))
    for buffers in frames:
        assert sum(len(b) for b in buffers) - offload.VNET_HDR_LEN <= 65535
    assert sum(merged_count(buffers) for buffers in frames) == 60


def test_other_packets_pass_untouched() -> None:
    udp = bytes.fromhex("4500001c") + bytes(24)
    frames = merge([(udp, 0), (b"\x60" + bytes(10), 0)])
    assert [unpack_frame(f) for f in frames] == [
        (VNET_HDR.unpack(bytes(10)), udp),
        (VNET_HDR.unpack(bytes(10)), b"\x60" + bytes(10)),
    ]


def test_a_udp_checksum_of_zero_is_sent_as_all_ones() -> None:
    # A payload chosen so that the finished checksum comes out as 0.
    header = struct.pack("!HHHH", 1, 2, 10, 0)
    packet = tcp_packet(4, b"")[:20]
    packet = packet[:9] + b"\x11" + packet[10:]
    base = packet + header
    pseudo = reference_sum(pseudo_header(base + b"\0\0", 20, 17))
    sum_without = reference_sum(base[20:] + b"\0\0")
    filler = (0xFFFF - reference_sum(struct.pack("!HH", pseudo, sum_without))) & 0xFFFF
    udp = base + struct.pack("!H", filler)
    udp = udp[:26] + struct.pack("!H", pseudo) + udp[28:]
    finished_packet = finish_checksum(udp, partial_hint(20, 6))
    assert finished_packet[26:28] == b"\xff\xff"


def test_hints_from_the_wire_are_checked() -> None:
    ipv4, ipv6 = b"\x45" + bytes(59), b"\x60" + bytes(79)
    assert hint_fits(ipv4, partial_hint(20, 16)) and hint_fits(ipv6, partial_hint(40, 6))
    assert not hint_fits(ipv4[:30], partial_hint(20, 16))  # field beyond the end
    assert not hint_fits(ipv4, (10 << 8) | 9)  # not TCP's or UDP's offset
    assert not hint_fits(ipv4, partial_hint(6, 6))  # would overwrite the source address
    assert not hint_fits(ipv6, partial_hint(20, 16))  # inside the IPv6 header
    assert partial_hint(21, 16) == 0 and partial_hint(600, 16) == 0


def test_merging_never_fails_on_mangled_packets_and_loses_no_bytes() -> None:
    """Packets from peers are authenticated but not trusted: any bytes must come out whole."""
    import random

    rng = random.Random(7)
    for _ in range(300):
        batch = segments(rng.choice((4, 6)), rng.randint(1, 6), size=rng.randint(1, 1400))
        mangled = []
        for packet, hint in batch:
            data = bytearray(packet)
            for _ in range(rng.randint(0, 3)):
                data[rng.randrange(min(len(data), 80))] = rng.randrange(256)
            if rng.random() < 0.2:
                data = data[: rng.randrange(len(data))]
            mangled.append((bytes(data), hint))
        frames = merge(mangled)
        payload_in = sum(len(p) for p, _ in mangled)
        payload_out = 0
        for buffers in frames:
            (_, _, header_len, *_), body = unpack_frame(buffers)
            # A merged frame has one header for all its segments; count each once.
            payload_out += len(body) + (merged_count(buffers) - 1) * header_len
        assert payload_out == payload_in
