"""Each peer's sessions and our handshake with it, moved by the lifecycle table.

The table (node/lifecycle.py) says what each event does in each state; this carries it out:
initiations and their retries, answers to them, confirmations of sessions we answered, cookie
replies, the end of sessions. It also owns the session and handshake indexes, so a datagram's
receiver index finds its session here.
"""

from __future__ import annotations

import math
import struct

from ..randomness import random_u32
from . import cookies, wire
from .context import NodeContext
from .events import PeerConnected
from .handshakes import initiation
from .lifecycle import WITH_HANDSHAKE, Event, Send, transition, without_handshake
from .noise import HandshakeError
from .paths import DirectPath, Path, endpoint_of
from .peer import Peer, path_changed, window
from .session import Session
from .timing import HANDSHAKE_RETRY_S, REJECT_AFTER_S

_INDEX = struct.Struct("<I")
_RESPONSE_INDEXES = struct.Struct("<II")


class PeerMachine:
    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.sessions: dict[int, Session] = {}  # our index -> session
        self.handshakes: dict[int, Peer] = {}  # our index of an initiation in flight -> peer

    def _end_sessions(self, peer: Peer) -> None:
        for session in (peer.current, peer.previous, peer.unconfirmed):
            if session is not None:
                self.sessions.pop(session.local_index, None)
        peer.current = peer.previous = peer.unconfirmed = None

    def peer_left(self, peer: Peer, now: float) -> None:
        """A peer said goodbye (authenticated): its sessions end and no path is trusted until
        it comes back with a new handshake."""
        self.fire(peer, Event.GOODBYE, now)

    def _distrust(self, peer: Peer) -> None:
        """Its sessions are over: no path is trusted until it speaks again."""
        self._end_sessions(peer)
        for path in peer.paths.values():
            path.last_received = -math.inf
        if peer.preferred is not None:
            peer.preferred = None
            self.node.events.append(path_changed(peer, None))

    def receive_response(self, data: bytes, socket_id: int | None, address: tuple | None,
                         via: str | None, now: float) -> None:  # fmt: skip
        if len(data) != wire.HANDSHAKE_RESPONSE_LEN:
            self.node.drops["handshake_malformed"] += 1
            return
        if address is not None and self.node.paths.inside_virtual_network(endpoint_of(address)):
            self.node.drops["endpoint_in_virtual_network"] += 1
            return
        sender_index, receiver_index = _RESPONSE_INDEXES.unpack_from(data, 4)
        peer = self.handshakes.get(receiver_index)
        if peer is None or peer.handshake is None:
            self.node.drops["unknown_session"] += 1
            return
        try:
            peer.handshake.initiator.read_message_2(data[12:])
        except HandshakeError:
            self.node.drops["handshake_failed"] += 1
            return
        self.node.accepted += 1
        send_key, receive_key = peer.handshake.initiator.split()
        del self.handshakes[receiver_index]
        peer.handshake = None
        session = Session(peer, receiver_index, sender_index, send_key, receive_key, True, now)
        self.sessions[receiver_index] = session
        self.promote(peer, session, now)
        self.node.paths.heard(peer, socket_id, address, via, now)
        self.node.events.append(PeerConnected(peer.address))
        self.node.handshakes["completed"] += 1
        self.fire(peer, Event.RESPONSE, now)
        self.node.paths.tell_local_endpoints(peer, now)

    def answered(self, peer: Peer, session: Session, now: float) -> None:
        """We answered the peer's initiation: the session waits for the peer to use it (then
        confirm), replacing one it never used."""
        if peer.unconfirmed is not None:
            self.sessions.pop(peer.unconfirmed.local_index, None)
        peer.unconfirmed = session
        self.sessions[session.local_index] = session
        self.fire(peer, Event.ANSWERED, now)

    def confirm(self, peer: Peer, session: Session, now: float) -> None:
        session.confirmed = True
        if peer.unconfirmed is session:
            peer.unconfirmed = None
        self.promote(peer, session, now)
        self.node.events.append(PeerConnected(peer.address))
        self.node.handshakes["completed"] += 1
        self.fire(peer, Event.CONFIRMED, now)
        self.node.paths.tell_local_endpoints(peer, now)

    def promote(self, peer: Peer, session: Session, now: float) -> None:
        if peer.previous is not None:
            self.sessions.pop(peer.previous.local_index, None)
        replaced = peer.current is not None
        peer.previous, peer.current = peer.current, session
        self.node.schedule.touch(peer, now)
        if replaced:
            # The paths are proven again with the new session. A path whose other end does not
            # hold it stops answering and is left: e.g. two controller processes sharing one
            # identity and database, one gone, the other now reaching us.
            self.node.paths.probe(peer, now)
        if peer.root:
            # Every other peer can now also be reached through this root.
            for other in self.node.registry.peers.values():
                if not other.root:
                    self.node.paths.add_relay_paths(other)
                    self.node.schedule.touch(other, now)

    def fire(self, peer: Peer, event: Event, now: float) -> None:
        """Do what the table says for this event in the peer's state, and move it to the
        table's next state (``peer.state``: kept, never worked out again from its fields)."""
        after, sends = transition(peer.state, event)
        for send in sends:
            if send is Send.INITIATION:
                self.initiate(peer, now)
            elif send is Send.DROP_QUEUE:
                self.node.packet_drops["queue_dropped_unreachable"] += len(peer.queue)
                peer.queue = []
            elif send is Send.QUEUE:
                self.node.tx.flush_queue(peer, now)
            elif send is Send.QUEUE_OR_CONFIRM:
                if peer.queue:
                    self.node.tx.flush_queue(peer, now)
                else:
                    self.node.tx.send(peer, wire.TYPE_DATA, b"", now)
            elif send is Send.END_CURRENT:
                if peer.current is not None:
                    self.sessions.pop(peer.current.local_index, None)
                    peer.current = None
                    self.without_session_from(peer, now)
            elif send is Send.END_SESSIONS:
                self._distrust(peer)
                self.without_session_from(peer, now)
            elif send is Send.ABANDON_HANDSHAKE:
                self._abandon_handshake(peer)
            elif send is Send.FORGET:
                self._end_sessions(peer)
                self._abandon_handshake(peer)
        if after in WITH_HANDSHAKE and peer.handshake is None:
            after = without_handshake(after)  # the initiation could not leave: no path
        peer.state = after
        self.node.schedule.touch(peer, now)

    @staticmethod
    def without_session_from(peer: Peer, now: float) -> None:
        """A handshake in flight while the session was there (a rekey, or a new handshake
        for want of a working path) counts towards "unreachable" from when the session ended:
        unreachable means 30 s of unanswered handshakes without a session."""
        if peer.handshake is not None:
            peer.handshake_started = now

    def _abandon_handshake(self, peer: Peer) -> None:
        """Our initiation in flight is no longer needed: not retried; a late answer is an
        unknown index."""
        self.handshakes.pop(peer.handshake_index, None)
        peer.handshake = None

    def initiate(self, peer: Peer, now: float) -> None:
        if peer.handshake is not None and now - peer.handshake_sent < HANDSHAKE_RETRY_S:
            return
        if not peer.paths:
            return
        if peer.handshake is None:
            peer.handshake_started = now
        self.handshakes.pop(peer.handshake_index, None)
        peer.handshake_index = self.new_index()
        peer.handshake = initiation(self.node.static_key, peer.identity.x25519_public,
                                    peer.handshake_index,
                                    wire.encode_timestamp(self.node.wall_offset + now),
                                    self.node.identity.ed25519_public)  # fmt: skip
        peer.handshake_sent = now
        self.node.handshakes["initiated"] += 1
        self.node.schedule.touch(peer, now)
        self.handshakes[peer.handshake_index] = peer
        peer.cookie_answered = ()
        # On the working path if there is one (a rekey); on every path otherwise: the answer
        # tells which paths work.
        if peer.preferred is not None and peer.preferred.alive(now, window(peer, now)):
            self.emit_initiation(peer, peer.preferred, now)
        else:
            for path in peer.paths.values():
                self.emit_initiation(peer, path, now)

    def emit_initiation(self, peer: Peer, path: Path, now: float) -> None:
        """The initiation in flight, with a mac2 if we hold a fresh cookie for this path."""
        cookie = None
        held = peer.cookies.get(path.endpoint) if isinstance(path, DirectPath) else None
        if held is not None:
            if now - held[1] < cookies.COOKIE_LIFETIME_S:
                cookie = held[0]
            else:
                del peer.cookies[path.endpoint]
        handshake = peer.handshake
        if handshake is None:
            return
        datagram = cookies.with_macs(handshake.body, handshake.mac1, cookie)
        self.node.tx.emit(path, datagram, now)

    def receive_cookie_reply(self, data: bytes, socket_id: int | None, address: tuple | None,
                             now: float) -> None:  # fmt: skip
        """The peer is under load and wants proof of our address: keep its cookie and send
        the same initiation again over that path, with a mac2 (once per initiation and path).
        Never relayed: a relayed initiation needs no proof (its root's session is one)."""
        if address is None:
            self.node.drops["cookie_reply_malformed"] += 1
            return
        if len(data) != wire.COOKIE_REPLY_LEN:
            self.node.drops["cookie_reply_malformed"] += 1
            return
        (receiver_index,) = _INDEX.unpack_from(data, 4)
        peer = self.handshakes.get(receiver_index)
        endpoint = endpoint_of(address)
        path = None if peer is None else peer.paths.get((socket_id, endpoint))
        if peer is None or peer.handshake is None or path is None:
            self.node.drops["unknown_session"] += 1
            return
        nonce_end = 8 + cookies.NONCE_LEN
        cookie = cookies.open_cookie(
            cookies.cookie_key(peer.identity.x25519_public),
            peer.handshake.mac1, data[8:nonce_end], data[nonce_end:],
        )  # fmt: skip
        if cookie is None:
            self.node.drops["cookie_reply_invalid"] += 1
            return
        self.node.accepted += 1
        if len(peer.cookies) >= 2 * len(peer.paths) + 2:
            peer.cookies.clear()
        peer.cookies[endpoint] = (cookie, now)
        if endpoint not in peer.cookie_answered:
            peer.cookie_answered += (endpoint,)
            self.emit_initiation(peer, path, now)

    def new_index(self) -> int:
        while True:
            index = random_u32()
            if index and index not in self.sessions and index not in self.handshakes:
                return index

    def data_session(self, first: bytes, now: float,
                     kind: int = wire.TYPE_DATA) -> Session | None:  # fmt: skip
        """The live session a datagram of ``kind`` (data, or a relay frame) is for, if any
        (else it takes the long way)."""
        if len(first) < wire.DATA_OVERHEAD or first[1] != kind:
            return None
        session = self.sessions.get(_INDEX.unpack_from(first, 4)[0])
        if session is None or now - session.created_at > REJECT_AFTER_S:
            return None
        return session
