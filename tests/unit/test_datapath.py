"""The two data paths (node/aead.py): the C extension and the pure-Python classes give the same
bytes and the same verdicts for random batches, including forged, replayed, reordered,
foreign and malformed datagrams."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneservice import native, offload
from oneservice.node import aead, wire
from oneservice.node.aead import PythonOpener, PythonSealer
from tests.unit.test_offload import ACK, CWR, FIN, PSH, segments, tcp_packet

try:
    from oneservice import _datapath
except ImportError:  # pragma: no cover - depends on the install
    _datapath = None

# scripts/run-tests sets this: there the extension must have been built, not silently absent.
REQUIRED = os.environ.get("ONESERVICE_REQUIRE_EXTENSION") == "1"
needs_extension = pytest.mark.skipif(
    _datapath is None and not REQUIRED, reason="the C extension is not built"
)
MAX_COUNTER = 2**64 - 1


def test_the_extension_is_built_where_it_is_required():
    if REQUIRED:
        assert _datapath is not None, "oneservice._datapath did not build (gcc, libssl-dev?)"
    if os.environ.get(native.VARIABLE) == "python":
        assert native.EXTENSION is None and aead.Sealer is PythonSealer
        assert offload.merge is offload.python_merge
    elif _datapath is not None:
        assert native.EXTENSION is _datapath and aead.Opener is _datapath.Opener
        assert offload.merge is _datapath.merge


def test_the_variable_chooses_the_pure_python_path(monkeypatch):
    monkeypatch.setenv(native.VARIABLE, "python")
    extension, primitives, description = native.load()
    assert extension is None and primitives is None
    assert description == "pure Python (ONESERVICE_DATAPATH=python)"


keys = st.binary(min_size=32, max_size=32)
packets = st.lists(
    st.tuples(st.binary(max_size=1500), st.integers(0, 0xFFFF)), min_size=0, max_size=20
)


@needs_extension
@settings(max_examples=200, deadline=None)
@given(key=keys, kind=st.integers(0, 255).filter(lambda kind: kind not in wire.THIN_FRAMES),
       index=st.integers(0, 2**32 - 1), counter=st.integers(0, MAX_COUNTER - 20),
       batch=packets)  # fmt: skip
def test_sealing_a_batch_gives_the_same_datagrams(key, kind, index, counter, batch):
    native = _datapath.Sealer(key).seal_many(kind, index, counter, batch)
    python = PythonSealer(key).seal_many(kind, index, counter, batch)
    assert native == python
    for number, (datagram, (payload, hint)) in enumerate(zip(native, batch, strict=True)):
        header = wire.DATA_HEADER.pack(wire.PROTOCOL_VERSION, kind, hint, index, counter + number)
        assert datagram == PythonSealer(key).seal(header, payload)
        assert datagram == _datapath.Sealer(key).seal(header, payload)


# A datagram in a batch: which sealed packet it is, and what is done to it on the way.
damage = st.sampled_from(["none", "none", "none", "flip", "truncate", "short", "index", "type",
                          "version", "empty"])  # fmt: skip


@st.composite
def traffic(draw):
    """Datagrams as a receiver may see them: sealed for it (in any order, some twice), and
    damaged or foreign ones among them; cut into the batches of several reads."""
    key = draw(keys)
    index = draw(st.integers(0, 2**32 - 1))
    base = draw(st.sampled_from([0, 5000, MAX_COUNTER - 2**13]))
    # Counters that jump (past the window, past 4096) as well as small reorders.
    offsets = draw(st.lists(st.one_of(st.integers(0, 40), st.integers(0, 6000)), min_size=1,
                            max_size=40))  # fmt: skip
    sealer = PythonSealer(key)
    datagrams = []
    for offset in offsets:
        payload = draw(st.binary(max_size=64))
        hint = draw(st.integers(0, 0xFFFF))
        header = wire.DATA_HEADER.pack(wire.PROTOCOL_VERSION, wire.TYPE_DATA, hint, index,
                                       base + offset)  # fmt: skip
        datagram = bytearray(sealer.seal(header, payload))
        how = draw(damage)
        if how == "flip":
            datagram[draw(st.integers(0, len(datagram) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif how == "truncate":
            del datagram[-1]
        elif how == "short":
            datagram = datagram[: draw(st.integers(0, wire.DATA_OVERHEAD - 1))]
        elif how == "index":
            datagram[4] ^= 1
        elif how == "type":
            datagram[1] = wire.TYPE_CONTROL
        elif how == "version":
            datagram[0] = 2
        elif how == "empty":
            datagram = bytearray(sealer.seal(header, b""))  # a keepalive
        datagrams.append(bytes(datagram))
    cuts = sorted(draw(st.lists(st.integers(0, len(datagrams)), max_size=4)))
    batches, start = [], 0
    for cut in [*cuts, len(datagrams)]:
        batches.append(datagrams[start:cut])
        start = cut
    return key, index, base, batches


@needs_extension
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=traffic())
def test_opening_batches_gives_the_same_packets_and_verdicts(case):
    key, index, base, batches = case
    native, python = _datapath.Opener(key, index), PythonOpener(key, index)
    for batch in batches:
        assert native.open_many(batch) == python.open_many(batch)
        for datagram in batch:
            assert native.open(datagram) == python.open(datagram)
    for offset in range(-5, 6100, 7):
        counter = base + offset
        if 0 <= counter <= MAX_COUNTER:
            assert native.seen_or_too_old(counter) == python.seen_or_too_old(counter)
    # The same datagrams as UDP GRO hands them over: one buffer, cut at the first one's size
    # (cut wrongly, where they differ in size, which must still give the same verdicts).
    native, python = _datapath.Opener(key, index), PythonOpener(key, index)
    for batch in batches:
        joined, size = b"".join(batch), len(batch[0]) if batch else 0
        assert native.open_coalesced(joined, size) == python.open_coalesced(joined, size)


@needs_extension
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=traffic(), kind=st.sampled_from([wire.TYPE_RELAY, wire.TYPE_RELAYED]))
def test_opening_relay_frames_gives_the_same_payloads_and_verdicts(case, kind):
    """A root's (and a relayed member's) batches: frames of one kind opened in one call."""
    key, index, _, batches = case
    native, python = _datapath.Opener(key, index), PythonOpener(key, index)
    sealer = PythonSealer(key)
    for number, batch in enumerate(batches):
        # The same traffic as frames of ``kind`` (data datagrams stay others), and mixed.
        frames = [sealer.seal(wire.DATA_HEADER.pack(1, kind, 0, index, 10_000 + number * 100 + i),
                              d[16:40]) for i, d in enumerate(batch)]  # fmt: skip
        mixed = [*frames, *batch]
        assert native.open_frames(mixed, kind) == python.open_frames(mixed, kind)
    # As UDP GRO hands them over (fresh openers: the counters above are spent).
    native, python = _datapath.Opener(key, index), PythonOpener(key, index)
    for number, batch in enumerate(batches):
        frames = [sealer.seal(wire.DATA_HEADER.pack(1, kind, 0, index, 50_000 + number * 100 + i),
                              d[16:40]) for i, d in enumerate(batch)]  # fmt: skip
        joined, size = b"".join(frames), len(frames[0]) if frames else 0
        assert (native.open_coalesced(joined, size, kind)
                == python.open_coalesced(joined, size, kind))  # fmt: skip
    with pytest.raises(ValueError):
        native.open_coalesced(b"", 0, 256)
    with pytest.raises(ValueError):
        native.open_frames([], wire.TYPE_DATA)
    with pytest.raises(ValueError):
        python.open_frames([], wire.TYPE_DATA)


def twins(implementation: str) -> tuple[type, type]:
    """The Sealer and Opener of one implementation ("native" skips where it is not built)."""
    if implementation == "python":
        return PythonSealer, PythonOpener
    if _datapath is None and not REQUIRED:
        pytest.skip("the C extension is not built")
    return _datapath.Sealer, _datapath.Opener


@st.composite
def thin_frames(draw):
    """Thin relay frames (an address and a data datagram sealed end to end for someone
    else), some damaged on the way, and the key and index they are for."""
    key, index, kind = draw(keys), draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from(
        sorted(wire.THIN_FRAMES)))  # fmt: skip
    end_to_end = PythonSealer(os.urandom(32))
    frames, payloads = [], []
    for counter in range(draw(st.integers(1, 12))):
        inner = end_to_end.seal(wire.DATA_HEADER.pack(1, wire.TYPE_DATA, 0, 3, counter),
                                draw(st.binary(max_size=80)))  # fmt: skip
        payload = draw(st.binary(min_size=5, max_size=5)) + inner
        frame = bytearray(PythonSealer(key).seal(
            wire.DATA_HEADER.pack(1, kind, 0, index, counter), payload))  # fmt: skip
        how = draw(st.sampled_from(["none", "none", "flip", "truncate", "extend"]))
        if how == "flip":
            frame[draw(st.integers(0, len(frame) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif how == "truncate":
            del frame[draw(st.integers(0, len(frame) - 1)):]
        elif how == "extend":
            frame += b"\0"
        frames.append(bytes(frame))
        payloads.append(payload)
    return key, index, kind, frames, payloads


@needs_extension
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=thin_frames())
def test_thin_frames_seal_and_open_as_the_python_twin(case):
    """Both twins seal a thin frame to the same bytes and open any frame, damaged or not, to
    the same payload and verdict; what opens is what was sealed."""
    key, index, kind, frames, payloads = case
    header = wire.DATA_HEADER.pack(1, kind, 0, index, 0)
    assert _datapath.Sealer(key).seal(header, payloads[0]) == PythonSealer(key).seal(
        header, payloads[0])  # fmt: skip
    for frame in frames:
        assert _datapath.Opener(key, index).open(frame) == PythonOpener(key, index).open(frame)
    native, python = _datapath.Opener(key, index), PythonOpener(key, index)
    assert native.open_frames(frames, kind) == python.open_frames(frames, kind)
    opened = python.open_frames(frames, kind)[0]
    assert all(payload in payloads for payload in opened)
    joined, size = b"".join(frames), len(frames[0])
    native, python = _datapath.Opener(key, index), PythonOpener(key, index)
    assert native.open_coalesced(joined, size, kind) == python.open_coalesced(joined, size, kind)


@needs_extension
@settings(max_examples=150, deadline=None)
@given(key=keys, kind=st.sampled_from([wire.TYPE_RELAY, wire.TYPE_RELAYED,
                                       *sorted(wire.THIN_FRAMES)]),
       address=st.binary(min_size=5, max_size=5), offset=st.sampled_from([0, 5]),
       bodies=st.lists(st.binary(max_size=200), max_size=8))  # fmt: skip
def test_sealing_relay_frames_puts_the_address_where_it_belongs(key, kind, address, offset,
                                                               bodies):  # fmt: skip
    """seal_frames (a member's frames, offset 0; a root's, which puts the source's address
    where the destination's was, offset 5) gives what seal_many gives for the payloads it
    does not make, in both twins."""
    inner = PythonSealer(os.urandom(32))
    datagrams = [bytes(offset) + inner.seal(wire.DATA_HEADER.pack(1, wire.TYPE_DATA, 0, 1, n),
                                            body) for n, body in enumerate(bodies)]  # fmt: skip
    native = _datapath.Sealer(key).seal_frames(kind, 7, 40, address, datagrams, offset)
    python = PythonSealer(key).seal_frames(kind, 7, 40, address, datagrams, offset)
    payloads = [(address + d[offset:], 0) for d in datagrams]
    assert native == python == PythonSealer(key).seal_many(kind, 7, 40, payloads)
    for sealer in (_datapath.Sealer(key), PythonSealer(key)):
        with pytest.raises(ValueError):
            sealer.seal_frames(kind, 7, 0, address[:4], datagrams, offset)
        with pytest.raises(ValueError):
            sealer.seal_frames(kind, 7, 0, address, [b"abc"], 5)


@pytest.mark.parametrize("implementation", ["python", "native"])
def test_a_thin_frame_hides_its_address_and_binds_the_datagram_it_carries(implementation):
    """Only the address is encrypted; any change to the frame's header, its address, its tag,
    or the carried datagram's header, tag or length (also with both ends kept) is refused. A
    change inside the carried datagram passes the root but not its end-to-end receiver."""
    sealer_class, opener_class = twins(implementation)
    key, end_to_end_key, address = os.urandom(32), os.urandom(32), bytes.fromhex("aabbccddee")
    [inner] = sealer_class(end_to_end_key).seal_many(wire.TYPE_DATA, 3, 0, [(b"p" * 100, 0)])
    [frame] = sealer_class(key).seal_many(wire.TYPE_RELAY_THIN, 7, 0, [(address + inner, 0)])
    assert len(frame) == len(inner) + 37 and address not in frame and frame.endswith(inner)
    assert opener_class(key, 7).open(frame) == address + inner
    for at in [*range(37 + 16), *range(len(frame) - 16, len(frame))]:
        damaged = frame[:at] + bytes([frame[at] ^ 1]) + frame[at + 1:]
        assert opener_class(key, 7).open(damaged) is None, at
    assert opener_class(key, 7).open(frame[:-1]) is None
    assert opener_class(key, 7).open(frame + b"x") is None
    cut, grown = frame[:60] + frame[61:], frame[:60] + b"x" + frame[60:]  # the same ends
    assert opener_class(key, 7).open(cut) is None and opener_class(key, 7).open(grown) is None
    middle = 37 + 16 + 50
    damaged = frame[:middle] + bytes([frame[middle] ^ 1]) + frame[middle + 1:]
    carried = opener_class(key, 7).open(damaged)[5:]
    assert opener_class(end_to_end_key, 3).open(carried) is None
    assert opener_class(end_to_end_key, 3).open(inner) == b"p" * 100
    sealer = sealer_class(key)
    control = wire.DATA_HEADER.pack(1, wire.TYPE_CONTROL, 0, 3, 0) + bytes(20)
    for payload in (address + control, address + inner[:31], address):
        with pytest.raises(ValueError, match="thin relay frame"):
            sealer.seal_many(wire.TYPE_RELAYED_THIN, 7, 1, [(payload, 0)])
    if implementation == "native":
        with pytest.raises(ValueError):
            sealer.seal_segments(wire.TYPE_RELAY_THIN, 7, 0, b"", 0, 0, False)


@needs_extension
@settings(max_examples=300, deadline=None)
@given(counters=st.lists(st.one_of(st.integers(0, 3000), st.integers(0, 2**20),
                                   st.just(MAX_COUNTER)), max_size=60))  # fmt: skip
def test_the_replay_windows_agree_on_every_counter(counters):
    native, python = _datapath.Opener(bytes(32), 1), PythonOpener(bytes(32), 1)
    for counter in counters:
        assert native.seen_or_too_old(counter) == python.seen_or_too_old(counter)
        assert native.mark(counter) == python.mark(counter)


@pytest.mark.parametrize("implementation", ["python", "native"])
def test_a_batch_opens_once_and_not_twice(implementation):
    """What each path must do on its own (not only agree): open, count, refuse replays."""
    sealer_class, opener_class = twins(implementation)
    key = os.urandom(32)
    batch = [(os.urandom(1400), 0x0A10), (b"", 0), (os.urandom(100), 0)]
    datagrams = sealer_class(key).seal_many(wire.TYPE_DATA, 7, 0, batch)
    foreign = wire.DATA_HEADER.pack(1, wire.TYPE_CONTROL, 0, 7, 9) + bytes(16)
    opener = opener_class(key, 7)
    opened, authenticated, others, replayed, forged = opener.open_many([*datagrams, foreign])
    assert opened == [batch[0], batch[2]] and authenticated == 3
    assert others == [foreign] and (replayed, forged) == (0, 0)
    [fresh] = sealer_class(key).seal_many(wire.TYPE_DATA, 7, 3, [(b"late", 0)])
    tampered = fresh[:-1] + bytes([fresh[-1] ^ 1])
    # Replays are refused before decrypting; a forgery does not take its counter.
    assert opener.open_many([*datagrams, tampered]) == ([], 0, [], 3, 1)
    assert opener.seen_or_too_old(2) and not opener.seen_or_too_old(3)
    assert opener.open_many([fresh]) == ([(b"late", 0)], 1, [], 0, 0)


@needs_extension
@pytest.mark.parametrize("size", [0, 1, 12, 15, 16, 17, 63, 64, 65, 511, 513, 1420, 4096,
                                  65535 - wire.DATA_OVERHEAD])  # fmt: skip
def test_every_payload_size_seals_and_opens_as_the_python_twin(size):
    """Around ChaCha20's 64-byte blocks and Poly1305's 16-byte ones, and up to the largest
    datagram: the extension makes its keystream in one call per packet, so its edges are
    where a length is not a multiple of either, and the end of its keystream buffer."""
    key, payload = os.urandom(32), os.urandom(size)
    header = wire.DATA_HEADER.pack(wire.PROTOCOL_VERSION, wire.TYPE_DATA, 5, 9, 2**64 - 2)
    datagram = _datapath.Sealer(key).seal(header, payload)
    assert datagram == PythonSealer(key).seal(header, payload)
    assert _datapath.Opener(key, 9).open(datagram) == payload
    middle = 16 + size // 2  # a ciphertext byte, or the tag's first where there is none
    forged = datagram[:middle] + bytes([datagram[middle] ^ 0x80]) + datagram[middle + 1 :]
    assert _datapath.Opener(key, 9).open(forged) is None


def test_an_extension_sealer_refuses_what_does_not_fit():
    if _datapath is None:
        pytest.skip("the C extension is not built")
    sealer = _datapath.Sealer(bytes(32))
    with pytest.raises(ValueError):
        _datapath.Sealer(bytes(31))
    with pytest.raises(ValueError):
        sealer.seal_many(3, 1, 0, [(bytes(65535), 0)])
    with pytest.raises(ValueError):
        sealer.seal_many(3, 1, 0, [(b"x", 0x10000)])
    with pytest.raises(TypeError):
        sealer.seal_many(3, 1, 0, [b"not a pair"])
    with pytest.raises(ValueError):
        sealer.seal(b"short header", b"x")
    with pytest.raises(TypeError):
        _datapath.Opener(bytes(32), 1).open_many([memoryview(b"x" * 40)])


# --- the TUN offloads' twins (offload.py) ------------------------------------------------

@st.composite
def super_packets(draw):
    """A TCP super-packet as a TUN reader gets it (IPv4 or IPv6, options or not), or the same
    with a few bytes overwritten: (packet, start, segment size, ecn)."""
    family = draw(st.sampled_from([4, 6]))
    options = draw(st.sampled_from([b"", bytes.fromhex("0101080a00000001000000aa")]))
    payload = draw(st.binary(min_size=1, max_size=6000))
    flags = draw(st.sampled_from([ACK, ACK | PSH, ACK | PSH | FIN, ACK | CWR]))
    packet = bytearray(tcp_packet(family, payload, seq=draw(st.integers(0, 2**32 - 1)),
                                  flags=flags, options=options))  # fmt: skip
    for _ in range(draw(st.integers(0, 2))):
        packet[draw(st.integers(0, min(len(packet), 80) - 1))] = draw(st.integers(0, 255))
    start = 20 if family == 4 else 40
    start = draw(st.sampled_from([start, start, start + 2, 0]))
    return bytes(packet), start, draw(st.integers(1, 2000)), draw(st.booleans())


def cut_with(segment, packet, start, size, ecn):
    try:
        return segment(packet, start, size, ecn)
    except ValueError as exc:  # (OffloadError is one)
        return ("refused", str(exc))


@needs_extension
@settings(max_examples=300, deadline=None)
@given(case=super_packets())
def test_cutting_a_super_packet_gives_the_same_segments(case):
    python = cut_with(offload.python_segment, *case)
    assert cut_with(_datapath.segment, *case) == python


@st.composite
def arrivals(draw):
    """Packets as they come out of the tunnel: segments of a few flows interleaved, some
    pushed, shortened, mangled or of another kind, with their hints."""
    flows = []
    for port in range(draw(st.integers(1, 3))):
        family = draw(st.sampled_from([4, 6]))
        size = draw(st.sampled_from([1380, 1200, 7]))
        count = draw(st.integers(1, 12))
        flows.append(segments(family, count, size=size, ports=(40000 + port, 5201)))
    packets = []
    while any(flows):
        flow = draw(st.sampled_from([f for f in flows if f]))
        packet, hint = flow.pop(0)
        data = bytearray(packet)
        how = draw(st.sampled_from(["as is"] * 6 + ["mangle", "cut", "push", "udp", "hint"]))
        if how == "mangle":
            data[draw(st.integers(0, min(len(data), 80) - 1))] = draw(st.integers(0, 255))
        elif how == "cut":
            del data[draw(st.integers(0, len(data) - 1)):]
        elif how == "push":
            data[(20 if data[0] >> 4 == 4 else 40) + 13] |= PSH
        elif how == "udp":
            data = bytearray(b"\x45\x00\x00\x1c" + bytes(24))
        elif how == "hint":
            hint = draw(st.integers(0, 0xFFFF))
        packets.append((bytes(data), hint))
    return packets


@needs_extension
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets=arrivals())
def test_merging_gives_the_same_frames(packets):
    native_frames = [b"".join(frame) for frame in _datapath.merge(packets)]
    assert native_frames == [b"".join(frame) for frame in offload.python_merge(packets)]


def written(write_merged, packets) -> tuple[list[bytes], tuple[int, int]]:
    """What write_merged writes, as a TUN device takes it: one writev, one packet (a datagram
    socket pair keeps each write whole)."""
    import socket

    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with reader, writer:
        writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1024 * 1024)
        writer.setblocking(False)  # (a full buffer fails a write: counted, never a hang)
        reader.setblocking(False)
        counts = write_merged(writer.fileno(), packets)
        frames = []
        with contextlib.suppress(BlockingIOError):
            while True:
                frames.append(reader.recv(128 * 1024))
    return frames, counts


@needs_extension
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets=arrivals())
def test_writing_merged_frames_writes_the_same_bytes_without_joining_them(packets):
    native, native_counts = written(_datapath.write_merged, packets)
    python, python_counts = written(offload.python_write_merged, packets)
    assert native == python and native_counts == python_counts == (len(python), 0)


@needs_extension
def test_a_frame_of_more_pieces_than_one_writev_takes_is_written_whole():
    # A flow of 1-byte segments: 2,000 pieces, above the 1,024 iovecs a writev takes.
    packets = segments(4, 2000, 1)
    native, counts = written(_datapath.write_merged, packets)
    assert native == written(offload.python_write_merged, packets)[0]
    assert counts == (len(native), 0) and len(native) == 1


@needs_extension
def test_a_write_the_device_refuses_is_counted_not_raised():
    packets = [*segments(4, 3, 100), (tcp_packet(4, b"x", seq=1300, flags=ACK | FIN), 0)]
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write fails (EPIPE; SIGPIPE is ignored by Python)
    try:
        for write_merged in (_datapath.write_merged, offload.python_write_merged):
            assert write_merged(write_end, packets) == (2, 2)
    finally:
        os.close(write_end)


# --- inner packets by address (node/wire.py) ------------------------------------------------

inner_packets = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from([b"", b"\x45" + bytes(19), b"\x60" + bytes(39), b"\x45" * 10]),
            st.builds(lambda version, tail: bytes([version]) + tail,
                      st.sampled_from([0x45, 0x46, 0x60, 0x50]),
                      st.binary(min_size=0, max_size=80)),
        ),
        st.one_of(st.just(0), st.sampled_from([0x0A10, 0x1406, 0x0A06, 0x1410]),
                  st.integers(0, 0xFFFF)),
    ),
    max_size=30,
)


@needs_extension
@settings(max_examples=500, deadline=None)
@given(packets=inner_packets, mtu=st.integers(0, 100))
def test_runs_by_address_are_the_same(packets, mtu):
    assert _datapath.by_source(packets) == wire.python_by_source(packets)
    assert _datapath.by_destination(packets, mtu) == wire.python_by_destination(packets, mtu)


def test_runs_by_address_group_consecutive_packets_and_count_the_rest():
    def ipv4(source: int, destination: int, length: int = 40) -> bytes:
        return b"\x45" + bytes(11) + bytes([10, 0, 0, source, 10, 0, 0, destination]) + bytes(
            length - 20
        )

    packets = [(ipv4(1, 2), 0), (ipv4(1, 3), 0), (b"\x45", 0), (ipv4(1, 3, 60), 0x0A10),
               (ipv4(2, 3), 0x0A10), (ipv4(2, 3, 30), 0x0A10)]  # fmt: skip
    for by_source in (wire.python_by_source, _datapath and _datapath.by_source):
        if by_source is None:
            continue
        runs, malformed = by_source(packets)
        # The last one's hint points past its end.
        assert [(s[-1], len(r)) for s, r in runs] == [(1, 3), (2, 1)] and malformed == 2
    for by_destination in (wire.python_by_destination, _datapath and _datapath.by_destination):
        if by_destination is None:
            continue
        runs, malformed, oversize = by_destination(packets, 50)
        assert [(d[-1], len(r)) for d, r in runs] == [(2, 1), (3, 3)]
        assert (malformed, oversize) == (1, 1)


@needs_extension
@settings(max_examples=300, deadline=None)
@given(case=super_packets(), key=keys, counter=st.integers(0, 2**40))
def test_sealing_a_super_packet_whole_gives_the_datagrams_of_its_segments(case, key, counter):
    packet, start, size, ecn = case
    python = cut_with(lambda *cut: PythonSealer(key).seal_segments(3, 9, counter, *cut), *case)
    native = cut_with(lambda *cut: _datapath.Sealer(key).seal_segments(3, 9, counter, *cut),
                      *case)  # fmt: skip
    assert native == python
    if not isinstance(python, tuple):  # (not refused)
        segments = offload.python_segment(packet, start, size, ecn)
        assert python == PythonSealer(key).seal_many(3, 9, counter, segments)


@settings(max_examples=300, deadline=None)
@given(case=super_packets(), gso=st.sampled_from([offload.GSO_TCPV4, offload.GSO_TCPV6]))
def test_a_super_packet_read_whole_is_the_segments_split_frame_gives(case, gso):
    packet, start, size, ecn = case
    gso_type = gso | (offload.GSO_ECN if ecn else 0)
    frame = offload.VNET_HDR.pack(offload.NEEDS_CSUM, gso_type, 0, size, start, 16) + packet
    try:
        expected = offload.split_frame(frame)
    except offload.OffloadError:
        expected = None
    try:
        read = offload.read_frame(frame)
    except offload.OffloadError:
        read = None
    if isinstance(read, offload.SuperPacket):
        assert read.segments() == expected and read.count == len(expected)
        assert all(len(s) <= read.header_len + read.size for s, _ in expected)
    else:
        assert read == expected


class ClearsTheList:
    """A hint that, if it were converted with __index__, would empty the list being read and
    free the packets the extension holds pointers into."""

    def __init__(self, packets: list) -> None:
        self.packets = packets

    def __index__(self) -> int:
        self.packets.clear()
        return 0


@needs_extension
def test_no_call_reads_an_object_that_code_it_runs_could_free():
    payload = tcp_packet(4, bytes(range(256)) * 4)
    for call in (
        lambda packets: _datapath.Sealer(bytes(32)).seal_many(3, 1, 0, packets),
        lambda packets: _datapath.merge(packets),
        lambda packets: _datapath.write_merged(-1, packets),
        lambda packets: _datapath.by_source(packets),
    ):
        packets = [(payload, 0), (payload, 0)]
        packets.append((payload, ClearsTheList(packets)))
        with pytest.raises(TypeError, match="a hint is an int"):
            call(packets)
    # by_destination reads no hint.
    assert _datapath.by_destination([(payload, ClearsTheList([]))], 1500)[2] == 0


@needs_extension
def test_a_segment_too_long_for_one_datagram_is_refused_not_sealed():
    # A super-packet whose one segment would make a datagram over 65,535 bytes: the cipher's
    # buffer and the datagram are bounded by MAX_PAYLOAD, checked where they are written.
    packet = tcp_packet(4, bytes(65535 - 40))
    assert len(packet) == 65535
    with pytest.raises(ValueError, match="too long for one datagram"):
        _datapath.Sealer(bytes(32)).seal_segments(3, 1, 0, packet, 20, 65535, False)


@needs_extension
def test_a_session_s_cipher_state_costs_under_2_kib():
    """A sealer and an opener hold a ChaCha20 context each and share one Poly1305 context
    (its key is new for every packet): with one each, a session cost 2.3 KiB of the heap,
    a root's 10,000 sessions 6 MiB more (issue 29, item 3)."""
    import subprocess
    import sys

    code = ("import os\n"
            "from oneservice import _datapath\n"
            "def heap():  # the data segment, which malloc's small blocks grow\n"
            "    pages = int(open('/proc/self/statm').read().split()[5])\n"
            "    return pages * os.sysconf('SC_PAGE_SIZE')\n"
            "keys = [os.urandom(32) for _ in range(4000)]\n"
            "before = heap()\n"
            "kept = [(_datapath.Sealer(k), _datapath.Opener(k, 1)) for k in keys]\n"
            "print((heap() - before) / len(kept))\n")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)  # fmt: skip
    assert float(result.stdout) < 2048, f"{float(result.stdout):.0f} bytes a session"
