"""Everything the core sends: IP packets from the taps (sealed in batches on a direct path, one
by one otherwise), control messages (in chunks when large), and what waits for a session.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter, methodcaller

from ..messages import ChunkRequest, Goodbye, Message, encode
from ..offload import SuperPacket
from ..randomness import random_u32
from . import chunks, wire
from .context import NodeContext
from .lifecycle import Event
from .paths import DirectPath, Path, RelayPath
from .peer import Peer
from .session import Session
from .timing import MAX_QUEUED_PACKETS, NO_PATH_PROBE_INTERVAL_S, REJECT_AFTER_S, REKEY_AFTER_S
from .toobig import RELAYED_PACKET_MAX, fragment_ipv4, too_big_answer

_PACKET = itemgetter(0)  # of a (packet, hint) pair


class Transmitter:
    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.sent_chunks = chunks.SentChunks()
        self.next_message_id = random_u32()
        self.chunks_resent = 0

    def send_packets(self, network_id: str, packets: list[tuple[bytes, int]], now: float) -> None:
        """IP packets from a network's tap, each with its partial-checksum hint. The segments
        of one super-packet share a destination: it is looked up once."""
        network = self.node.registry.networks.get(network_id)
        if network is None:
            self.node.packet_drops["unknown_network"] += len(packets)
            return
        runs, malformed, oversize = wire.by_destination(packets, network.config.mtu)
        if malformed:
            self.node.packet_drops["outbound_malformed"] += malformed
        if oversize:
            self.node.packet_drops["oversize"] += oversize
        for destination, run in runs:
            peer_address = network.by_destination.get(destination) or network.gateway_for(
                destination
            )
            if peer_address is None:
                self.node.packet_drops["no_route"] += len(run)
                continue
            peer = self.node.registry.peers[peer_address]
            self.node.paths.mark_traffic(peer, now)
            self.send_data(peer, run, now, network_id)

    def send_super_packet(self, network_id: str, packet: SuperPacket, now: float) -> None:
        """A TCP super-packet from a network's tap (offload.py): its segments share one
        destination and fit the MTU if the first does, so it is routed once and sealed in
        one call. Anything unusual takes the way of its cut segments."""
        network = self.node.registry.networks.get(network_id)
        if network is None:
            self.node.packet_drops["unknown_network"] += packet.count
            return
        if packet.header_len + packet.size > network.config.mtu:
            self.send_packets(network_id, packet.segments(), now)  # counts which are too big
            return
        destination = wire.address_bytes(packet.packet, source=False)
        if destination is None:
            self.send_packets(network_id, packet.segments(), now)  # counts them as malformed
            return
        peer_address = network.by_destination.get(destination) or network.gateway_for(
            destination
        )
        if peer_address is None:
            self.node.packet_drops["no_route"] += packet.count
            return
        peer = self.node.registry.peers[peer_address]
        self.node.paths.mark_traffic(peer, now)
        direct = self.direct(peer, now)
        datagrams = direct and direct[0].seal_super(packet)
        if datagrams:
            # Each but a shorter last one: the data header, the segment's headers, size, the tag.
            self.sent(peer, direct, datagrams,
                      wire.DATA_OVERHEAD + packet.header_len + packet.size, now)  # fmt: skip
            return
        path = peer.preferred
        fits_relay = packet.header_len + packet.size <= RELAYED_PACKET_MAX
        # Its segments sealed straight from it, as on a direct path.
        if isinstance(path, RelayPath) and fits_relay and self.send_relayed(
                peer, path, methodcaller("seal_super", packet), now):  # fmt: skip
            return
        self.send_data(peer, packet.segments(), now, network_id)

    def send_data(self, peer: Peer, packets: list[tuple[bytes, int]], now: float,
                  network_id: str) -> None:  # fmt: skip
        """IP packets to one peer: sealed in one call when a session and a direct path are
        there; otherwise one by one (queued, relayed, or starting a handshake)."""
        direct = self.direct(peer, now)
        datagrams = direct and direct[0].seal_many(wire.TYPE_DATA, packets)
        if datagrams:
            self.sent(peer, direct, datagrams, 0, now)
            return
        path = peer.preferred
        if isinstance(path, RelayPath):
            packets = self.fit_relay(network_id, packets)
            seal = methodcaller("seal_many", wire.TYPE_DATA, packets)
            if packets and self.send_relayed(peer, path, seal, now):
                return
        for packet, hint in packets:
            self.send(peer, wire.TYPE_DATA, packet, now, hint)

    def send_relayed(self, peer: Peer, path: RelayPath,
                     seal: Callable[[Session], list[bytes] | None],
                     now: float) -> bool:  # fmt: skip
        """IP packets through a root: sealed for the peer in one call (``seal``, with the
        peer's session: Session.seal_many or seal_super), and their relay frames for the root
        in another. False (nothing sent) if that cannot be done now."""
        session = peer.current
        root = self.node.registry.peers.get(path.via)
        carrier = self.direct(root, now) if root is not None else None
        if session is None or carrier is None or now - session.created_at > REJECT_AFTER_S:
            return False
        inner = seal(session)
        if not inner:
            return False
        destination = bytes.fromhex(peer.address)
        # Thin frames for a root that takes them: the data inside is sealed end to end.
        kind = wire.TYPE_RELAY_THIN if root and root.thin_frames else wire.TYPE_RELAY
        frames = carrier[0].seal_frames(kind, destination, inner, 0)
        if not frames:
            return False
        session.last_sent = path.last_sent = now
        peer.datagrams_sent += len(inner)
        peer.bytes_sent += sum(map(len, inner))
        self.sent(root, carrier, frames, 0, now)  # type: ignore[arg-type]
        if now - session.created_at > REKEY_AFTER_S and peer.handshake is None:
            self.node.machine.fire(peer, Event.REKEY_DUE, now)
        return True

    def send_frames(self, peer: Peer, kind: int, address: bytes, datagrams: list[bytes],
                    offset: int, now: float) -> None:  # fmt: skip
        """Relay frames of one kind to a peer, each datagram from ``offset`` on behind
        ``address``: in one call on a direct path, else one by one."""
        direct = self.direct(peer, now)
        frames = direct and direct[0].seal_frames(kind, address, datagrams, offset)
        if frames:
            self.sent(peer, direct, frames, 0, now)
            return
        for datagram in datagrams:
            self.send(peer, kind, address + datagram[offset:], now)

    def fit_relay(self, network_id: str, packets: list[tuple[bytes, int]],
                  ) -> list[tuple[bytes, int]]:  # fmt: skip
        """Packets about to go relayed, made to fit a relay frame (node/toobig.py): cut into
        IPv4 fragments where allowed; otherwise dropped, the first answered into the tap with
        "too big" so that its sender sends smaller at once."""
        if max(map(len, map(_PACKET, packets)), default=0) <= RELAYED_PACKET_MAX:
            return packets  # the common case: one look per packet, in C
        fitting: list[tuple[bytes, int]] = []
        answered = False
        for packet, hint in packets:
            if len(packet) <= RELAYED_PACKET_MAX:
                fitting.append((packet, hint))
                continue
            fragments = None if hint else fragment_ipv4(packet, RELAYED_PACKET_MAX)
            if fragments:
                fitting.extend((fragment, 0) for fragment in fragments)
                continue
            self.node.packet_drops["too_big_relayed"] += 1
            answer = None if answered else too_big_answer(packet, RELAYED_PACKET_MAX)
            if answer is not None:
                self.node.packets.setdefault(network_id, []).append((answer, 0))
                answered = True
        return fitting

    def direct(self, peer: Peer, now: float) -> tuple[Session, DirectPath] | None:
        """The peer's session and path if data can go to it at once, sealed in batches."""
        session, path = peer.current, peer.preferred
        if (
            session is None or not isinstance(path, DirectPath)
            or now - session.created_at > REJECT_AFTER_S
        ):  # fmt: skip
            return None
        return session, path

    def sent(self, peer: Peer, direct: tuple[Session, DirectPath], datagrams: list[bytes],
             size: int, now: float) -> None:  # fmt: skip
        session, path = direct
        session.last_sent = path.last_sent = now
        peer.datagrams_sent += len(datagrams)
        peer.bytes_sent += sum(map(len, datagrams))
        self.node.datagrams.append((path.socket_id, path.endpoint, datagrams, size))
        if now - session.created_at > REKEY_AFTER_S and peer.handshake is None:
            self.node.machine.fire(peer, Event.REKEY_DUE, now)

    def send(self, peer: Peer, kind: int, payload: bytes, now: float, hint: int = 0) -> None:
        session = peer.current
        path = peer.preferred
        if session is None or now - session.created_at > REJECT_AFTER_S or path is None:
            if len(peer.queue) >= MAX_QUEUED_PACKETS:
                self.node.packet_drops["queue_full"] += 1
            else:
                peer.queue.append((kind, payload, hint))
            if session is None or now - session.created_at > REJECT_AFTER_S:
                self.node.machine.fire(peer, Event.NEED, now)
            elif now - peer.no_path_probed >= NO_PATH_PROBE_INTERVAL_S:
                # Not once per packet: held traffic (fail-closed) would make every packet a
                # probe on every path, towards a gateway that is gone.
                peer.no_path_probed = now
                self.node.paths.probe(peer, now)
            return
        self.send_on(peer, path, kind, payload, now, hint)
        if now - session.created_at > REKEY_AFTER_S and peer.handshake is None:
            self.node.machine.fire(peer, Event.REKEY_DUE, now)  # (rekeying already: nothing to do)

    def send_on(
        self, peer: Peer, path: Path, kind: int, payload: bytes, now: float, hint: int = 0
    ) -> None:
        session = peer.current
        if session is None:
            return
        datagram = session.seal(kind, payload, hint)
        if datagram is None:  # its counter is used up
            self.node.machine.fire(peer, Event.NEED, now)
            return
        session.last_sent = now
        peer.datagrams_sent += 1
        peer.bytes_sent += len(datagram)
        self.emit(path, datagram, now)

    def emit(self, path: Path, datagram: bytes, now: float) -> None:
        path.last_sent = now
        if isinstance(path, DirectPath):
            self.node.datagrams.append((path.socket_id, path.endpoint, [datagram], 0))
            return
        assert isinstance(path, RelayPath)
        if len(datagram) > RELAYED_PACKET_MAX + wire.DATA_OVERHEAD:
            # Its relay frame would not fit the path (a packet queued before the peer went
            # relayed): never left to IP fragmentation (node/toobig.py).
            self.node.packet_drops["too_big_relayed"] += 1
            return
        root = self.node.registry.peers.get(path.via)
        if root is None or root.current is None or root.preferred is None:
            self.node.packet_drops["relay_unavailable"] += 1
            return
        destination = bytes.fromhex(path.to)
        self.send_on(root, root.preferred, wire.TYPE_RELAY, destination + datagram, now)

    def flush_queue(self, peer: Peer, now: float) -> None:
        if peer.current is None or peer.preferred is None:
            return
        queued, peer.queue = peer.queue, []
        for kind, payload, hint in queued:
            self.send_on(peer, peer.preferred, kind, payload, now, hint)

    def send_message(self, peer: Peer, message: Message, now: float) -> None:
        """One control message: in one datagram, or in chunks if it is larger (chunks.py)."""
        payload = encode(message)
        if len(payload) <= chunks.CHUNK_LEN:
            self.send(peer, wire.TYPE_CONTROL, payload, now)
            return
        message_id = self.next_message_id
        self.next_message_id = (message_id + 1) & 0xFFFFFFFF
        try:
            parts = chunks.split(payload, message_id)
        except ValueError:
            self.node.packet_drops["control_too_large"] += 1
            return
        self.sent_chunks.keep(peer.address, message_id, parts, now)
        for part in parts:
            self.send(peer, wire.TYPE_CONTROL_CHUNK, part, now)

    def resend_chunks(self, peer: Peer, message: ChunkRequest, now: float) -> None:
        for part in self.sent_chunks.again(peer.address, message.message_id,
                                           list(message.indexes), now):  # fmt: skip
            self.chunks_resent += 1
            self.send(peer, wire.TYPE_CONTROL_CHUNK, part, now)

    def say_goodbye(self, now: float) -> None:
        """Stopping: tell every connected peer, so that whoever routes through us (a full
        tunnel) stops at once instead of after the probe timeout."""
        for peer in self.node.registry.peers.values():
            if peer.current is not None and peer.preferred is not None:
                self.send_message(peer, Goodbye(), now)
