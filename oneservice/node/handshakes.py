"""Handshakes before any peer state is touched (pure: time comes in as ``now``).

The responder's side, up to the point where the initiator's peer is known: the cheap checks an
initiation must pass (the policy is node/admission.py), cookie replies under load, the bounded
queue, the Noise read (two Diffie-Hellman computations), and the wait for an unknown
initiator's address check. What comes out (``Intake.read``) is an initiation whose Noise
message verified, with the initiator's static key: the core then finds or admits its peer and
answers. And the initiator's side: the initiation message itself, and its MACs.

Every initiation refused is counted once in the ``drops`` Counter given, by reason.
"""

from __future__ import annotations

import struct
from collections import Counter, deque
from collections.abc import Iterator

from ..records import record
from . import cookies, wire
from .admission import MAX_QUEUED_INITIATIONS, HandshakeLimits, IdentityChecks
from .noise import HandshakeError, Initiator, Responder

_INDEX = struct.Struct("<I")


@record
class Arrival:
    """Where a datagram came from: one of our sockets and an address, or relayed by the root
    ``via`` (then socket and address are None)."""

    socket_id: int | None
    address: tuple | None
    via: str | None

    @property
    def source(self) -> str:
        """Who rate limits count it against: the sender's IP, or the relaying root."""
        return self.address[0] if self.address is not None else self.via or ""


@record
class ReadInitiation:
    """An initiation whose Noise message verified: from ``remote_static``, waiting for the
    core to find or admit its peer and answer with ``responder``."""

    responder: Responder
    sender_index: int
    timestamp: bytes
    remote_static: bytes
    ed25519_public: bytes
    arrival: Arrival


class Intake:
    def __init__(self, static_private, static_public: bytes, now: float,
                 drops: Counter[str]) -> None:  # fmt: skip
        self._static = static_private
        self._drops = drops
        self._limits = HandshakeLimits(now)
        self._cookie_issuer = cookies.CookieIssuer(static_public, now)
        self._queue: deque[tuple[bytes, Arrival]] = deque()
        # Unknown initiators' address checks (scrypt), run off the event loop by the service.
        self.identities = IdentityChecks(now, drops)
        self.cookie_replies_sent = 0

    def offer(self, data: bytes, arrival: Arrival, now: float, can_reply: bool) -> bytes | None:
        """An initiation from the wire. Only the cheap checks here: what passes waits for
        read(), after the transport datagrams of this wake-up. Returns a cookie reply to send
        back where it came from, when the node is under load and it carries no proof of its
        address (``can_reply``: the socket it came in on is still there)."""
        if len(data) != wire.HANDSHAKE_INIT_LEN:
            self._drops["handshake_malformed"] += 1
            return None
        if not self._cookie_issuer.mac1_valid(data):
            self._drops["handshake_bad_mac"] += 1
            return None
        # A relayed initiation comes over a root's session: its source is proven.
        address = arrival.address
        if (
            address is not None
            and self._limits.under_load(now, len(self._queue))
            and not self._cookie_issuer.mac2_valid(data, address, now)
        ):
            self._drops["cookie_required"] += 1
            if not can_reply:
                return None
            (sender_index,) = _INDEX.unpack_from(data, 4)
            nonce, sealed = self._cookie_issuer.reply(data, address, now)
            self.cookie_replies_sent += 1
            return wire.cookie_reply(sender_index, nonce, sealed)
        if not self._limits.allowed(arrival.source, now):
            self._drops["handshake_rate_limited"] += 1
            return None
        if len(self._queue) >= MAX_QUEUED_INITIATIONS:
            self._drops["handshake_queue_full"] += 1
            return None
        self._queue.append((data, arrival))
        return None

    def read(self) -> Iterator[ReadInitiation]:
        """The queued initiations whose Noise message verifies (one DH computation each)."""
        while self._queue:
            data, arrival = self._queue.popleft()
            (sender_index,) = _INDEX.unpack_from(data, 4)
            responder = Responder(self._static, wire.PROLOGUE)
            try:
                payload = responder.read_message_1(data[8 : wire.HANDSHAKE_INIT_BODY_LEN])
            except HandshakeError:
                self._drops["handshake_failed"] += 1
                continue
            yield ReadInitiation(responder, sender_index, payload[: wire.TIMESTAMP_LEN],
                                 responder.remote_static, payload[wire.TIMESTAMP_LEN :],
                                 arrival)  # fmt: skip

    def waiting(self) -> int:
        """Initiations queued or waiting for an identity check: a flood's backlog."""
        return len(self._queue) + self.identities.pending()


@record
class Initiation:
    """Ours, in flight: the Noise state, the message without its MACs, and its mac1 (a
    cookie reply is bound to it, and the same message goes again with a mac2 at once)."""

    initiator: Initiator
    body: bytes
    mac1: bytes


def initiation(static_private, remote_static: bytes, index: int, timestamp: bytes,
               ed25519_public: bytes) -> Initiation:  # fmt: skip
    """A new initiation to the peer whose X25519 key is ``remote_static``: it carries our
    timestamp (growing across restarts: replays are refused) and our Ed25519 key."""
    initiator = Initiator(static_private, remote_static, wire.PROLOGUE)
    body = wire.handshake_init(index, initiator.write_message_1(timestamp + ed25519_public))
    return Initiation(initiator, body, cookies.mac(cookies.mac1_key(remote_static), body))
