"""Handshakes others start with us: cheap checks first (node/handshakes.py), the answer once
the initiator is known, and nodes we never heard of kept as transient peers, within bounds,
once their address is checked off the event loop (node/admission.py).
"""

from __future__ import annotations

from ..identity import Identity
from . import wire
from .admission import IdentityKey
from .context import NodeContext
from .handshakes import Arrival, Intake, ReadInitiation
from .paths import endpoint_of
from .peer import Peer
from .session import Session
from .timing import MAX_TRANSIENT_PEERS, TRANSIENT_EVICT_IDLE_S


class Responder:
    def __init__(self, node: NodeContext, now: float) -> None:
        self.node = node
        self.intake = Intake(node.static_key, node.identity.x25519_public, now, node.drops)
        self.evicted_transient_peers = 0

    def receive_initiation(self, data: bytes, socket_id: int | None, address: tuple | None,
                           via: str | None, now: float) -> None:  # fmt: skip
        """Only cheap checks here (node/handshakes.py): what passes waits for
        process_handshakes, after the transport datagrams of this wake-up."""
        reply = self.intake.offer(data, Arrival(socket_id, address, via), now,
                                  can_reply=socket_id in self.node.uplinks.families)  # fmt: skip
        if reply is not None and socket_id is not None and address is not None:
            self.node.datagrams.append((socket_id, endpoint_of(address), [reply], 0))

    @property
    def cookie_replies_sent(self) -> int:
        return self.intake.cookie_replies_sent

    def process_handshakes(self, now: float) -> None:
        """Handle the initiations that passed the cheap checks (one DH computation each)."""
        for read in self.intake.read():
            self.admit(read, now)

    def waiting(self) -> int:
        """Initiations queued or waiting for an identity check: a flood's backlog."""
        return self.intake.waiting()

    def admit(self, read: ReadInitiation, now: float) -> None:
        """An initiation that verified: answered if its initiator is a peer, or once its
        address is checked if it is not."""
        peer = self.node.registry.by_static.get(read.remote_static)
        if peer is None:
            key = read.remote_static + read.ed25519_public
            identities = self.intake.identities
            known = identities.known(key)
            if known is None:
                # Its address takes a scrypt run: off the event loop (identity_requests).
                identities.wait(key, read.arrival.source, read, now, self.node.meets_strangers)
                return
            peer = self.accept_unknown(key, known, now)
            if peer is None:
                return
        elif peer.identity.ed25519_public != read.ed25519_public:
            self.node.drops["identity_mismatch"] += 1
            return
        self.answer_initiation(peer, read, now)

    def identity_requests(self) -> list[IdentityKey]:
        """Identities (X25519 + Ed25519 public key) whose address the service should derive,
        off the event loop (``identity.derive_address``), and report with identity_derived."""
        return self.intake.identities.take_requests()

    def identity_derived(self, key: IdentityKey, address: str | None, now: float) -> None:
        """The address of an identity asked for (None: the check failed)."""
        for read in self.intake.identities.derived(key, address, now):
            peer = self.node.registry.by_static.get(key[:32])
            if peer is None:
                peer = self.accept_unknown(key, address, now)
            if peer is not None:
                self.answer_initiation(peer, read, now)
        self.node.registry.identity_checked(key, address, now)

    def answer_initiation(self, peer: Peer, read: ReadInitiation, now: float) -> None:
        if read.timestamp <= peer.last_initiation_timestamp:
            self.node.drops["handshake_replayed"] += 1
            return
        if not peer.networks and not peer.root:
            # Reached us while in none of our networks: uses us as its root, and may be
            # found through us.
            peer.findable = True
        arrival = read.arrival
        inside = self.node.paths.inside_virtual_network
        if arrival.address is not None and inside(endpoint_of(arrival.address)):
            self.node.drops["endpoint_in_virtual_network"] += 1
            return
        self.node.accepted += 1
        peer.last_initiation_timestamp = read.timestamp
        local_index = self.node.machine.new_index()
        responder = read.responder
        response = responder.write_message_2(b"")
        send_key, receive_key = responder.split()
        session = Session(peer, local_index, read.sender_index, send_key, receive_key, False, now)
        self.node.machine.answered(peer, session, now)
        path = self.node.paths.heard(peer, arrival.socket_id, arrival.address, arrival.via, now)
        if path is not None:
            response = wire.handshake_response(local_index, read.sender_index, response)
            self.node.tx.emit(path, response, now)

    def accept_unknown(self, key: IdentityKey, address: str, now: float) -> Peer | None:
        """A node we never heard of, with a valid handshake and a checked address: kept as a
        transient peer, within bounds."""
        transient = [p for p in self.node.registry.peers.values() if not p.keep]
        if len(transient) >= MAX_TRANSIENT_PEERS and not self.evict_idle_transient(transient, now):
            self.node.drops["too_many_peers"] += 1
            return None
        peer = None if address == self.node.identity.address else (
            self.node.registry.add_peer(Identity(address, key[:32], key[32:]), now))  # fmt: skip
        if peer is None:
            # Same address, other keys, and the known one was checked too: a collision or a
            # forgery. The known one stays. (One only vouched for was forged: it went.)
            self.node.drops["identity_mismatch"] += 1
        return peer

    def evict_idle_transient(self, transient: list[Peer], now: float) -> bool:
        """Make room by forgetting the transient peer idle the longest, if it has been idle a
        while: newcomers are not locked out by yesterday's visitors (or a flood's)."""
        oldest = min(transient, key=lambda p: max(p.last_heard, p.handshake_sent))
        if now - max(oldest.last_heard, oldest.handshake_sent) < TRANSIENT_EVICT_IDLE_S:
            return False
        self.node.registry.forget(oldest, now)
        self.evicted_transient_peers += 1
        return True
