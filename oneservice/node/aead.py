"""The data path's ChaCha20-Poly1305, a batch per call: a Sealer per session for what we send,
an Opener (with the replay window) for what we receive.

Two implementations with one interface and the same bytes out (oneservice/native.py
chooses): ``oneservice._datapath``, a C extension over OpenSSL's EVP with one cipher context
per direction and one call per batch; and the pure-Python classes below, over
``cryptography``.

A data datagram is ``header (16) | ciphertext | tag (16)``; the header (version, type, hint,
receiver index, counter: node/wire.py) is the associated data, and the nonce is four zero
bytes and the header's counter bytes. ``Opener.open_many`` takes the datagrams of one read
and returns ``(opened, authenticated, others, replayed, forged)``: the (packet, hint) pairs
that opened with a payload; how many authenticated at all (keepalives included); the
datagrams that are not data for this opener's index, in order, for the caller to handle one
by one; and how many were replays or forgeries (dropped). ``open_coalesced(data, size)`` is
``open_many`` of the datagrams of one UDP GRO read (``wire.split_coalesced``); the C twin
reads them in place. ``open_frames(datagrams, kind)`` is ``open_many`` for relay frames (a root's
and a relayed member's batches): their payloads instead of (packet, hint) pairs.

Thin relay frames (``wire.THIN_FRAMES``: their type in the header says so) are sealed and
opened in the same calls with the same payload, the peer's address and a data datagram, laid
out as ``header (16) | address, encrypted (5) | tag (16) | data datagram``: only the address
is encrypted, and the tag covers the frame's header and the data datagram's header, tag and
length (the datagram is sealed end to end already; docs/PROTOCOL.md says why that is enough).
"""

from __future__ import annotations

from .. import native
from ..offload import python_segment
from ..primitives import python_aead, python_invalid_tag
from .wire import (
    ADDRESS_LEN,
    DATA_HEADER,
    DATA_OVERHEAD,
    PROTOCOL_VERSION,
    THIN_FRAMES,
    TYPE_DATA,
    split_coalesced,
)

# Same window as WireGuard: packets may arrive up to 2048 counters late (reordering across
# paths during a handover) and still be accepted exactly once.
REPLAY_WINDOW_SIZE = 2048
_WINDOW_MASK = (1 << REPLAY_WINDOW_SIZE) - 1
_ZERO_NONCE_PREFIX = b"\0\0\0\0"
_MAX_DATAGRAM = 65535
_THIN_SEALED_END = DATA_OVERHEAD // 2 + ADDRESS_LEN + DATA_OVERHEAD // 2  # header, address, tag


def _thin_associated(header: bytes, inner: bytes) -> bytes:
    """What a thin frame's tag covers besides its address: its header, and the header, the
    tag and the length (in 16 bytes) of the data datagram it carries."""
    half = DATA_OVERHEAD // 2
    return header + inner[:half] + inner[-half:] + len(inner).to_bytes(half, "little")


class PythonSealer:
    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = python_aead(key)

    def seal(self, header: bytes, payload: bytes) -> bytes:
        nonce = _ZERO_NONCE_PREFIX + header[8:16]
        if header[1] not in THIN_FRAMES:
            return header + self._aead.encrypt(nonce, payload, header)
        inner = payload[ADDRESS_LEN:]
        if len(inner) < DATA_OVERHEAD or inner[1] != TYPE_DATA:
            raise ValueError("a thin relay frame carries a data datagram")
        address = payload[:ADDRESS_LEN]
        return header + self._aead.encrypt(nonce, address, _thin_associated(header, inner)) + inner

    def seal_many(self, kind: int, remote_index: int, counter: int,
                  packets: list[tuple[bytes, int]]) -> list[bytes]:  # fmt: skip
        seal, pack = self.seal, DATA_HEADER.pack
        datagrams = []
        for packet, hint in packets:
            header = pack(PROTOCOL_VERSION, kind, hint, remote_index, counter)
            datagrams.append(seal(header, packet))
            counter += 1
        return datagrams

    def seal_frames(self, kind: int, remote_index: int, counter: int, address: bytes,
                    datagrams: list[bytes], offset: int) -> list[bytes]:  # fmt: skip
        """Relay frames: seal_many of (address + datagram[offset:], 0) for each; the C twin
        does not make those payloads."""
        if len(address) != ADDRESS_LEN or offset < 0 or any(len(d) < offset for d in datagrams):
            raise ValueError("an address of 5 bytes, and datagrams no shorter than the offset")
        return self.seal_many(kind, remote_index, counter,
                              [(address + d[offset:], 0) for d in datagrams])  # fmt: skip

    def seal_segments(self, kind: int, remote_index: int, counter: int, packet: bytes,
                      start: int, size: int, ecn: bool) -> list[bytes]:  # fmt: skip
        """A TCP super-packet cut into segments (offload.py), each sealed as by
        seal_many; the C twin seals straight from the super-packet."""
        return self.seal_many(kind, remote_index, counter,
                              python_segment(packet, start, size, ecn))  # fmt: skip


class PythonOpener:
    __slots__ = ("_aead", "bitmap", "highest", "local_index")

    def __init__(self, key: bytes, local_index: int) -> None:
        self._aead = python_aead(key)
        self.local_index = local_index
        self.highest = -1
        self.bitmap = 0  # bit i set: counter (highest - i) was seen

    def open(self, datagram: bytes) -> bytes | None:
        if not DATA_OVERHEAD <= len(datagram) <= _MAX_DATAGRAM:
            return None
        header = datagram[:16]
        nonce = _ZERO_NONCE_PREFIX + header[8:]
        try:
            if header[1] not in THIN_FRAMES:
                return self._aead.decrypt(nonce, datagram[16:], header)
            sealed, inner = datagram[16:_THIN_SEALED_END], datagram[_THIN_SEALED_END:]
            if len(inner) < DATA_OVERHEAD:
                return None
            return self._aead.decrypt(nonce, sealed, _thin_associated(header, inner)) + inner
        except python_invalid_tag():  # (evaluated only when decrypt raised)
            return None

    def seen_or_too_old(self, counter: int) -> bool:
        """Cheap pre-check before decrypting."""
        if counter > self.highest:
            return False
        offset = self.highest - counter
        return offset >= REPLAY_WINDOW_SIZE or bool((self.bitmap >> offset) & 1)

    def mark(self, counter: int) -> bool:
        """Record an authenticated counter; False if it was a replay after all."""
        if counter > self.highest:
            shift = counter - self.highest
            self.bitmap = ((self.bitmap << shift) | 1) & _WINDOW_MASK if shift < 4096 else 1
            self.highest = counter
            return True
        offset = self.highest - counter
        if offset >= REPLAY_WINDOW_SIZE or (self.bitmap >> offset) & 1:
            return False
        self.bitmap |= 1 << offset
        return True

    def open_many(
        self, datagrams: list[bytes]
    ) -> tuple[list[tuple[bytes, int]], int, list[bytes], int, int]:
        return self._open_list(datagrams, TYPE_DATA)  # type: ignore[return-value]

    def open_frames(
        self, datagrams: list[bytes], kind: int
    ) -> tuple[list[bytes], int, list[bytes], int, int]:
        """As open_many, for the relay frames of ``kind``: their payloads."""
        if kind == TYPE_DATA:
            raise ValueError("open_frames is for relay frames: open_many opens data")
        return self._open_list(datagrams, kind)  # type: ignore[return-value]

    def _open_list(self, datagrams: list[bytes], kind: int) -> tuple[list, int, list, int, int]:
        opened: list = []
        others: list[bytes] = []
        authenticated = replayed = forged = 0
        index = self.local_index
        for datagram in datagrams:
            if (
                not DATA_OVERHEAD <= len(datagram) <= _MAX_DATAGRAM
                or datagram[0] != PROTOCOL_VERSION or datagram[1] != kind
                or int.from_bytes(datagram[4:8], "little") != index
            ):  # fmt: skip
                others.append(datagram)
                continue
            counter = int.from_bytes(datagram[8:16], "little")
            if self.seen_or_too_old(counter):
                replayed += 1
                continue
            payload = self.open(datagram)
            if payload is None:
                forged += 1
                continue
            if not self.mark(counter):
                replayed += 1
                continue
            authenticated += 1
            if kind != TYPE_DATA:
                opened.append(payload)
            elif payload:
                opened.append((payload, datagram[2] | datagram[3] << 8))
        return opened, authenticated, others, replayed, forged

    def open_coalesced(
        self, data: bytes, size: int, kind: int = TYPE_DATA
    ) -> tuple[list, int, list[bytes], int, int]:
        return self._open_list(split_coalesced(data, size), kind)


if native.EXTENSION is not None:
    Sealer, Opener = native.EXTENSION.Sealer, native.EXTENSION.Opener
else:
    Sealer, Opener = PythonSealer, PythonOpener
