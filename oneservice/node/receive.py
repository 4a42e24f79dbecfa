"""Everything the core receives: datagrams from the binder, opened in batches where they are
data for a live session, one by one otherwise, each either accepted or counted as a drop; the
packets inside go to their network's tap, control messages to whoever handles them.
"""

from __future__ import annotations

import struct

from ..messages import (
    AddressAnswer,
    AddressQuery,
    Birthday,
    ChunkRequest,
    ConfigAnswer,
    ConfigDelta,
    ConfigRequest,
    Goodbye,
    Introduction,
    LocalEndpoints,
    MessageError,
    Ping,
    Pong,
    Whois,
    WhoisAnswer,
    decode,
)
from . import chunks, relayframes, wire
from .context import NodeContext
from .events import ControlReceived
from .paths import Path
from .peer import Peer
from .session import Session
from .timing import REJECT_AFTER_S

_DATA_FIELDS = struct.Struct("<IQ")
_TO_A_ROOT = frozenset({wire.TYPE_RELAY, wire.TYPE_RELAY_THIN})
_FROM_A_ROOT = frozenset({wire.TYPE_RELAYED, wire.TYPE_RELAYED_THIN})
_FRAME_TYPES = _TO_A_ROOT | _FROM_A_ROOT
_TRANSPORT_TYPES = frozenset({wire.TYPE_DATA, wire.TYPE_CONTROL, wire.TYPE_CONTROL_CHUNK,
                              *_FRAME_TYPES})  # fmt: skip


class Receiver:
    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.reassembly = chunks.Reassembly(node.packet_drops)

    def receive_datagrams(self, datagrams: list[bytes], socket_id: int | None,
                          address: tuple | None, now: float,
                          via: str | None = None) -> None:  # fmt: skip
        """Datagrams from one sender on one socket (or relayed by root ``via``). Data for the
        first one's session is opened and replay-checked in one call (node/aead.py), and so
        are relay frames (a root's work, and a relayed member's); the rest, one by one."""
        first = datagrams[0]
        session = self.node.machine.data_session(first, now)
        if session is not None:
            result = session.opener.open_many(datagrams)
            self.opened(session, result, socket_id, address, via, now,
                        sum(map(len, datagrams)) if result[1] else 0)  # fmt: skip
            return
        session, kind = self.frame_session(first, now) if via is None else (None, -1)
        if session is not None:
            self.frames(session, kind, session.opener.open_frames(datagrams, kind),
                        socket_id, address, now)  # fmt: skip
            return
        for data in datagrams:
            self.receive(data, socket_id, address, via, now)

    def receive_coalesced(self, data: bytes, size: int, socket_id: int, address: tuple,
                          now: float) -> None:  # fmt: skip
        """One read of a socket: datagrams of ``size`` bytes (the last maybe shorter) as UDP
        GRO joined them, or one datagram (size 0)."""
        session = self.node.machine.data_session(data, now)
        if session is not None:
            self.opened(session, session.opener.open_coalesced(data, size), socket_id, address,
                        None, now, len(data))  # fmt: skip
            return
        session, kind = self.frame_session(data, now)
        if session is not None:  # relay frames (a root's, a relayed member's): no split either
            self.frames(session, kind, session.opener.open_coalesced(data, size, kind),
                        socket_id, address, now)  # fmt: skip
            return
        if not 0 < size < len(data):  # one datagram (a handshake's, a control message's)
            self.receive(data, socket_id, address, None, now)
            return
        # (the first datagram of the split is the one just looked at)
        self.receive_datagrams(wire.split_coalesced(data, size), socket_id, address, now)

    def frame_session(self, first: bytes, now: float) -> tuple[Session | None, int]:
        """The live session a relay frame (a root's, or a relayed member's) is for, and its
        kind; (None, kind) when it is none."""
        kind = first[1] if len(first) > 1 else -1
        if kind not in _FRAME_TYPES:
            return None, kind
        return self.node.machine.data_session(first, now, kind), kind

    def opened(self, session: Session, result: tuple, socket_id: int | None,
               address: tuple | None, via: str | None, now: float,
               size: int = 0) -> None:  # fmt: skip
        """What an opener made of a batch (aead.py): counted, delivered, the rest handled.
        ``size``: the bytes of the batch, counted for the peer if any of it authenticated."""
        opened, authenticated, others, replayed, forged = result
        self.refused(replayed, forged)
        if authenticated:
            path = self.authenticated(session, socket_id, address, via, now)
            self.node.accepted += authenticated
            session.peer.datagrams_received += authenticated
            session.peer.bytes_received += size
            if opened:
                self.receive_data(session.peer, opened, path, now)
        for data in others:
            self.receive(data, socket_id, address, via, now)

    def refused(self, replayed: int, forged: int) -> None:
        """What a batch's opener refused, counted."""
        if replayed:
            self.node.drops["replayed"] += replayed
        if forged:
            self.node.drops["authentication_failed"] += forged

    def frames(self, session: Session, kind: int, result: tuple, socket_id: int | None,
               address: tuple | None, now: float) -> None:  # fmt: skip
        """Relay frames opened in one call: to relay on (we are a root), or relayed to us
        (the datagrams inside, through the root, in one call too)."""
        payloads, authenticated, others, replayed, forged = result
        self.refused(replayed, forged)
        if authenticated:
            peer = session.peer
            peer.datagrams_received += authenticated
            peer.bytes_received += sum(map(len, payloads)) + authenticated * wire.DATA_OVERHEAD
            path = self.authenticated(session, socket_id, address, None, now)
            if kind in _TO_A_ROOT:
                self.node.accepted += authenticated
                self.node.paths.follow_sender(peer, path, now)  # answers go where it is now
                self.node.rootservice.forward(peer, payloads, now)
            else:
                # Counted by what the datagrams inside turn out to be (each received datagram
                # is accepted or dropped exactly once).
                self.receive_relayed(peer, payloads, now)
        for data in others:
            self.receive(data, socket_id, address, None, now)

    def receive(self, data: bytes, socket_id: int | None, address: tuple | None, via: str | None,
                now: float) -> None:  # fmt: skip
        """A datagram from (socket, address), or relayed by root ``via`` (then both None)."""
        length = len(data)
        if length < 4:
            self.node.drops["truncated"] += 1
            return
        if data[0] != wire.PROTOCOL_VERSION:
            self.node.drops["unsupported_version"] += 1
            return
        kind = data[1]
        if kind in _TRANSPORT_TYPES:
            self.receive_transport(data, kind, socket_id, address, via, now)
        elif kind == wire.TYPE_HANDSHAKE_INIT:
            self.node.responder.receive_initiation(data, socket_id, address, via, now)
        elif kind == wire.TYPE_HANDSHAKE_RESPONSE:
            self.node.machine.receive_response(data, socket_id, address, via, now)
        elif kind == wire.TYPE_COOKIE_REPLY:
            self.node.machine.receive_cookie_reply(data, socket_id, address, now)
        else:
            self.node.drops["unknown_type"] += 1

    def receive_transport(self, data: bytes, kind: int, socket_id: int | None,
                          address: tuple | None, via: str | None, now: float) -> None:  # fmt: skip
        if len(data) < wire.DATA_OVERHEAD:
            self.node.drops["truncated"] += 1
            return
        receiver, counter = _DATA_FIELDS.unpack_from(data, 4)
        session = self.node.machine.sessions.get(receiver)
        if session is None:
            self.node.drops["unknown_session"] += 1
            return
        opener = session.opener
        if opener.seen_or_too_old(counter):
            self.node.drops["replayed"] += 1
            return
        if now - session.created_at > REJECT_AFTER_S:
            self.node.drops["expired_session"] += 1
            return
        payload = session.decrypt(data)
        if payload is None:
            self.node.drops["authentication_failed"] += 1
            return
        if not opener.mark(counter):
            self.node.drops["replayed"] += 1
            return
        peer = session.peer
        peer.datagrams_received += 1
        peer.bytes_received += len(data)
        path = self.authenticated(session, socket_id, address, via, now)
        if kind in _FROM_A_ROOT:
            # Counted by what the datagram inside turns out to be, so that every datagram
            # received is still accepted or dropped exactly once.
            self.receive_relayed(peer, [payload], now)
            return
        self.node.accepted += 1
        if kind in _TO_A_ROOT:
            self.node.paths.follow_sender(peer, path, now)  # its answers go where it is now
            self.node.rootservice.forward(peer, [payload], now)
        elif kind == wire.TYPE_DATA:
            if payload:  # (empty: a keepalive)
                self.receive_data(peer, [(payload, data[2] | data[3] << 8)], path, now)
        elif kind == wire.TYPE_CONTROL_CHUNK:
            whole = self.reassembly.add(peer.address, payload, now)
            if whole is not None:
                self.receive_control(peer, whole, path, now)
        else:
            self.receive_control(peer, payload, path, now)

    def authenticated(self, session: Session, socket_id: int | None, address: tuple | None,
                      via: str | None, now: float) -> Path | None:  # fmt: skip
        """Bookkeeping once a session's datagrams authenticated: the path they came on."""
        session.last_received = now
        peer = session.peer
        if not session.confirmed:
            self.node.machine.confirm(peer, session, now)
        return self.node.paths.heard(peer, socket_id, address, via, now)

    def receive_data(self, peer: Peer, packets: list[tuple[bytes, int]], path: Path | None,
                     now: float) -> None:  # fmt: skip
        """IP packets (with their hints) from one peer, from one path."""
        self.node.paths.mark_traffic(peer, now)
        peer.last_data_received = now
        self.node.paths.follow_sender(peer, path, now)
        self.deliver(peer, packets)

    def receive_relayed(self, root: Peer, payloads: list[bytes], now: float) -> None:
        """Datagrams a root relayed to us (each behind the address of the peer it is from):
        they came over our relay path through this root, in one call where they can."""
        if not root.root:
            self.node.drops["relayed_not_from_root"] += len(payloads)
            return
        frames = relayframes.whole(payloads)
        if len(frames) < len(payloads):
            self.node.drops["truncated"] += len(payloads) - len(frames)
        if frames:
            self.receive_datagrams(relayframes.unframed(frames), None, None, now,
                                   via=root.address)  # fmt: skip

    def deliver(self, peer: Peer, packets: list[tuple[bytes, int]]) -> None:
        """Each packet to the network its source address belongs to, or dropped. Packets of
        one flow come in runs: the source's network is looked up once per run."""
        runs, malformed = wire.by_source(packets)
        if malformed:
            self.node.packet_drops["inner_malformed"] += malformed
        batches = self.node.packets
        for source, run in runs:
            network_id = self.source_network(peer, source)
            if network_id is None:
                self.node.packet_drops["source_not_allowed"] += len(run)
                continue
            batch = batches.get(network_id)
            if batch is None:
                batches[network_id] = run
            else:
                batch.extend(run)

    def source_network(self, peer: Peer, source: bytes) -> str | None:
        """The network a packet from this peer with this source address is from, if any."""
        network_id = peer.source_networks.get(source)
        if network_id is not None:
            return network_id
        networks = self.node.registry.networks
        for routed in peer.routed_networks:
            if networks[routed].source_owner(source) == peer.address:
                return routed
        return None

    def receive_control(self, peer: Peer, payload: bytes, path: Path | None, now: float) -> None:
        try:
            message = decode(payload)
        except MessageError:
            self.node.packet_drops["control_malformed"] += 1
            return
        if not isinstance(message, Ping | Pong):
            self.node.paths.follow_sender(peer, path, now)  # sent on its preferred path
        match message:
            case Ping() | Pong():
                peer.thin_frames = message.thin
                self.node.paths.receive_probe(peer, message, path, now)
            case Whois():
                self.node.rootservice.answer_whois(peer, message, now)
            case WhoisAnswer():
                self.node.roots.receive_whois_answer(peer, message, now)
            case Introduction():
                self.node.roots.receive_introduction(peer, message, now)
            case Goodbye():
                self.node.machine.peer_left(peer, now)
            case ChunkRequest():
                self.node.tx.resend_chunks(peer, message, now)
            case AddressQuery():
                self.node.rootservice.answer_address_query(peer, message, path, now)
            case LocalEndpoints():
                self.node.paths.receive_local_endpoints(peer, message, now)
            case Birthday():
                self.node.birthday.receive_request(peer, message, now)
            case ConfigRequest() | ConfigAnswer() | ConfigDelta() | AddressAnswer():
                self.node.events.append(ControlReceived(peer.address, message))

    def ask_for_missing_chunks(self, now: float) -> None:
        for address, message_id, missing in self.reassembly.due_requests(now):
            peer = self.node.registry.peers.get(address)
            if peer is not None:
                self.node.tx.send_message(peer, ChunkRequest(message_id, tuple(missing)), now)
