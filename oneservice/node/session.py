"""Transport sessions: keys from a finished handshake, counters, the replay window."""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .wire import DATA_HEADER, PROTOCOL_VERSION

# Same window as WireGuard: packets may arrive up to 2048 counters late (reordering across
# paths during a handover) and still be accepted exactly once.
REPLAY_WINDOW_SIZE = 2048
_WINDOW_MASK = (1 << REPLAY_WINDOW_SIZE) - 1
# Never reuse a nonce: refuse to send long before the 64-bit counter could wrap.
REJECT_AFTER_MESSAGES = 2**64 - 2**16
_ZERO_NONCE_PREFIX = b"\0\0\0\0"


class ReplayWindow:
    __slots__ = ("bitmap", "highest")

    def __init__(self) -> None:
        self.highest = -1
        self.bitmap = 0  # bit i set: counter (highest - i) was seen

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


class Session:
    """One direction-pair of keys between us and a peer, named by our and their index."""

    __slots__ = (
        "confirmed", "created_at", "initiator", "last_received", "last_sent", "local_index",
        "peer", "receive_aead", "remote_index", "replay", "send_aead", "send_counter",
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
        self.send_aead = ChaCha20Poly1305(send_key)
        self.receive_aead = ChaCha20Poly1305(receive_key)
        self.send_counter = 0
        self.replay = ReplayWindow()
        self.initiator = initiator
        # The responder may not send on a session until the initiator has used it: that
        # proves the initiator holds the keys (and that our response arrived).
        self.confirmed = initiator
        self.created_at = now
        self.last_received = now
        self.last_sent = now

    def seal(self, packet_type: int, payload: bytes, hint: int = 0) -> bytes | None:
        """Encrypt one payload into a datagram; None when the counter is exhausted. ``hint``
        (data only) says where the payload's partial checksum is (tap/offload.py)."""
        counter = self.send_counter
        if counter >= REJECT_AFTER_MESSAGES:
            return None
        self.send_counter = counter + 1
        header = DATA_HEADER.pack(PROTOCOL_VERSION, packet_type, hint, self.remote_index, counter)
        return header + self.send_aead.encrypt(_ZERO_NONCE_PREFIX + header[8:16], payload, header)

    def decrypt(self, datagram: bytes) -> bytes | None:
        """Authenticate and decrypt; None if forged or corrupted. The caller checks the replay
        window before (cheap) and marks it after (only authenticated counters count)."""
        header = datagram[:16]
        try:
            return self.receive_aead.decrypt(
                _ZERO_NONCE_PREFIX + header[8:16], datagram[16:], header
            )
        except InvalidTag:
            return None
