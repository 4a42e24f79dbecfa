"""Our roots, as their client: staying connected, looking nodes up through them, and acting on
their answers and introductions (believed only as node/roots.py allows).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..identity import Identity
from ..messages import AddressQuery, Introduction, Message, Whois, WhoisAnswer
from .context import NodeContext
from .lifecycle import Event
from .lookups import Lookups
from .paths import Endpoint
from .peer import Peer
from .roots import read_announcement


class RootClient:
    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.roots: dict[str, Peer] = {}
        self.lookups = Lookups(node.packet_drops)

    def set_roots(self, roots: Iterable[tuple[Identity, Iterable[Endpoint]]], now: float) -> None:
        """Roots answer identity look-ups, introduce peers and relay; we stay connected.
        Replaces the previous set: a root no longer listed becomes an ordinary peer (kept only
        if a network still lists it)."""
        roots = list(roots)
        listed = {identity.address for identity, _ in roots}
        networks = self.node.registry.networks.values()
        members = {m.address for n in networks for m in n.config.members}
        for address, peer in self.node.registry.peers.items():
            self.node.schedule.touch(peer, now)
            if peer.root and address not in listed:
                peer.root = False
                peer.keep = address in members
                self.roots.pop(address, None)
            relayed = [k for k, path in peer.paths.items()
                       if path.via is not None and path.via not in listed]  # fmt: skip
            for key in relayed:
                del peer.paths[key]
            if relayed:
                self.node.paths.reselect(peer, now)  # its preferred path may have been one of them
        for identity, endpoints in roots:
            if identity.address == self.node.identity.address:
                continue
            peer = self.node.registry.add_peer(identity, now)
            if peer is None:
                continue  # another checked identity holds its address or key
            peer.root = peer.keep = True
            self.roots[identity.address] = peer
            # A root is reached directly, never through another root.
            peer.paths = {k: p for k, p in peer.paths.items() if p.via is None}
            if peer.preferred is not None and peer.preferred.via is not None:
                peer.preferred = None
            peer.hints.update(endpoints)
            self.node.paths.add_candidates(peer)
            if peer.current is None:
                self.node.machine.fire(peer, Event.NEED, now)

    def lookup(self, address: str, now: float) -> None:
        """Find a node by address through the roots; it becomes a kept peer when found."""
        if address in self.node.registry.peers or address == self.node.identity.address:
            return
        self.lookups.start(address, now)
        for root in self.roots.values():
            if root.current is not None:
                self.node.tx.send_message(root, Whois(address), now)

    def receive_whois_answer(self, root: Peer, message: WhoisAnswer, now: float) -> None:
        address = message.address
        if not root.root or address not in self.lookups or message.identity is None:
            return  # not asked, not from a root, or unknown there (another root may know)
        peer = self.peer_from_announcement(message.identity, message.endpoints, now)
        if peer is None or peer.address != address:
            self.node.packet_drops["whois_answer_invalid"] += 1
            return
        peer.keep = True
        self.connect(peer, now)

    def receive_introduction(self, root: Peer, message: Introduction, now: float) -> None:
        if not root.root:
            self.node.packet_drops["introduction_not_from_root"] += 1
            return
        peer = self.peer_from_announcement(message.identity, message.endpoints, now)
        if peer is None:
            self.node.packet_drops["introduction_invalid"] += 1
            return
        if peer.current is not None:
            # The other side is told at the same time: both probe now, so filtering NATs on
            # both sides let the other's probes in.
            self.node.paths.probe(peer, now)
        self.connect(peer, now)

    def peer_from_announcement(self, identity_text: str, endpoints_text: tuple[str, ...],
                               now: float) -> Peer | None:  # fmt: skip
        """An identity with endpoints from a root, if believable (node/roots.py)."""
        announced = read_announcement(identity_text, endpoints_text, self.node.identity.address,
                                      self.identity_of)  # fmt: skip
        if announced is None:
            return None
        peer = self.node.registry.add_peer(announced.identity, now)
        if peer is None:
            return None
        peer.hints.update(announced.endpoints)
        self.node.paths.add_candidates(peer)
        return peer

    def identity_of(self, address: str) -> Identity | None:
        """The checked identity we hold for an address: what an announcement must not
        contradict. (One merely vouched for gives way to the announced one, which is checked.)"""
        peer = self.node.registry.peers.get(address)
        return peer.identity if peer is not None and peer.verified else None

    def connect(self, peer: Peer, now: float) -> None:
        if peer.current is None:
            self.node.machine.fire(peer, Event.NEED, now)
        for message in self.lookups.found(peer.address):
            self.node.tx.send_message(peer, message, now)

    def send_control(self, address: str, message: Message, now: float) -> None:
        """Send a control message to any node, looking it up through the roots if needed."""
        peer = self.node.registry.peers.get(address)
        if peer is not None:
            peer.keep = True
            self.node.tx.send_message(peer, message, now)
            return
        self.lookups.hold(address, message)
        self.lookup(address, now)

    def ask_address(self, address: str, query_id: int, now: float) -> bool:
        """Ask a peer where it sees us (the answer comes as a ControlReceived event); False
        if there is no such peer."""
        peer = self.node.registry.peers.get(address)
        if peer is None:
            return False
        self.node.tx.send_message(peer, AddressQuery(query_id), now)
        return True

    def connected(self) -> bool:
        return any(root.current is not None for root in self.roots.values())
