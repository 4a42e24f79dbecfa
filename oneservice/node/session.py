"""Transport sessions: keys from a finished handshake, counters, the replay window."""

from __future__ import annotations

from ..offload import SuperPacket
from .aead import Opener, Sealer
from .wire import DATA_HEADER, PROTOCOL_VERSION, TYPE_DATA

# Never reuse a nonce: refuse to send long before the 64-bit counter could wrap.
REJECT_AFTER_MESSAGES = 2**64 - 2**16


class Session:
    """One direction-pair of keys between us and a peer, named by our and their index."""

    __slots__ = (
        "confirmed", "created_at", "initiator", "last_received", "last_sent", "local_index",
        "opener", "peer", "remote_index", "sealer", "send_counter",
    )  # fmt: skip

    def __init__(
        self,
        peer,
        local_index: int,
        remote_index: int,
        send_key: bytes,
        receive_key: bytes,
        initiator: bool,
        now: float,
    ) -> None:
        self.peer = peer
        self.local_index = local_index
        self.remote_index = remote_index
        self.sealer = Sealer(send_key)
        # Decrypts what arrives for local_index and keeps its replay window.
        self.opener = Opener(receive_key, local_index)
        self.send_counter = 0
        self.initiator = initiator
        # The responder may not send on a session until the initiator has used it: that
        # proves the initiator holds the keys (and that our response arrived).
        self.confirmed = initiator
        self.created_at = now
        self.last_received = now
        self.last_sent = now

    def seal(self, packet_type: int, payload: bytes, hint: int = 0) -> bytes | None:
        """Encrypt one payload into a datagram; None when the counter is exhausted. ``hint``
        (data only) says where the payload's partial checksum is (offload.py)."""
        counter = self._take_counters(1)
        if counter is None:
            return None
        header = DATA_HEADER.pack(PROTOCOL_VERSION, packet_type, hint, self.remote_index, counter)
        return self.sealer.seal(header, payload)

    def seal_many(self, packet_type: int, packets: list[tuple[bytes, int]]) -> list[bytes] | None:
        """One datagram per (payload, hint), in one call; None (nothing sealed) when the
        counter would run out on the way: the caller then seals one at a time."""
        counter = self._take_counters(len(packets))
        if counter is None:
            return None
        return self.sealer.seal_many(packet_type, self.remote_index, counter, packets)

    def seal_frames(self, kind: int, address: bytes, datagrams: list[bytes],
                    offset: int) -> list[bytes] | None:  # fmt: skip
        """Relay frames of ``kind`` in one call: each datagram from ``offset`` on, behind the
        5-byte ``address``; None (nothing sealed) as seal_many."""
        counter = self._take_counters(len(datagrams))
        if counter is None:
            return None
        return self.sealer.seal_frames(kind, self.remote_index, counter, address, datagrams,
                                       offset)  # fmt: skip

    def seal_super(self, packet: SuperPacket) -> list[bytes] | None:
        """The data datagrams of a TCP super-packet's segments, sealed in one call without
        cutting it first; None (nothing sealed) as seal_many."""
        counter = self._take_counters(packet.count)
        if counter is None:
            return None
        return self.sealer.seal_segments(TYPE_DATA, self.remote_index, counter, packet.packet,
                                         packet.start, packet.size, packet.ecn)  # fmt: skip

    def _take_counters(self, count: int) -> int | None:
        """The first of ``count`` fresh counters, or None (none taken) if they would go past
        REJECT_AFTER_MESSAGES."""
        counter = self.send_counter
        if counter + count > REJECT_AFTER_MESSAGES:
            return None
        self.send_counter = counter + count
        return counter

    def decrypt(self, datagram: bytes) -> bytes | None:
        """Authenticate and decrypt; None if forged or corrupted. The caller checks the replay
        window (``opener``) before (cheap) and marks it after (only authenticated counters
        count)."""
        return self.opener.open(datagram)
