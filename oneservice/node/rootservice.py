"""What a root does for others (``settings.relay``): answers who-is look-ups as node/roots.py
allows and introduces both sides, relays datagrams it cannot read; and what any member answers
a member that asks where it sees it.
"""

from __future__ import annotations

import ipaddress

from ..messages import AddressAnswer, AddressQuery, Introduction, Whois, WhoisAnswer
from . import relayframes, wire
from .context import NodeContext
from .introductions import RelayIntroductions
from .paths import DirectPath, Path
from .peer import Peer, window
from .roots import advertised_endpoints, may_tell


class RootService:
    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.introductions = RelayIntroductions()

    def forward(self, source: Peer, payloads: list[bytes], now: float) -> None:
        """As a root: pass datagrams on to the peers they are for (we cannot read them),
        sealed in one call per destination."""
        if not self.node.relay:
            self.node.packet_drops["relay_refused"] += len(payloads)
            return
        frames = relayframes.whole(payloads)
        if len(frames) < len(payloads):
            self.node.packet_drops["relay_truncated"] += len(payloads) - len(frames)
        source_address = bytes.fromhex(source.address)
        for address, group in relayframes.by_address(frames).items():
            destination = self.node.registry.peers.get(address.hex())
            if destination is None or destination.current is None or destination is source:
                self.node.packet_drops["relay_no_destination"] += len(group)
                continue
            kinds = relayframes.kinds_inside(group)
            thin = destination.thin_frames and relayframes.thin_fits(group, kinds)
            kind = wire.TYPE_RELAYED_THIN if thin else wire.TYPE_RELAYED
            # The source's address where the destination's was.
            self.node.tx.send_frames(destination, kind, source_address, group, wire.ADDRESS_LEN,
                                     now)  # fmt: skip
            # Only data says the pair uses us as its path (probes cross every path, a working
            # direct one too); the type byte of the datagram inside is in the clear.
            data = wire.TYPE_DATA in kinds
            if data and self.introductions.due(source.address, destination.address, now):
                self.introduce(source, destination, now)
                self.introduce(destination, source, now)

    def introduce(self, told: Peer, about: Peer, now: float) -> None:
        """Tell ``told`` who ``about`` is and where we see it (it then punches: both sides
        are told at once). Only between nodes that may know of each other (node/roots.py)."""
        if not may_tell(told.networks, about.networks, about.findable):
            return
        intro = Introduction(about.identity.public_text(), tuple(self.endpoints_of(about, now)))
        self.node.tx.send_message(told, intro, now)

    def answer_whois(self, asker: Peer, message: Whois, now: float) -> None:
        """Only a root (``relay``) answers, and only as node/roots.py allows."""
        address = message.address
        if not self.node.relay:
            self.node.packet_drops["whois_refused"] += 1
            return
        target = self.node.registry.peers.get(address)
        if target is not None and not may_tell(asker.networks, target.networks, target.findable):
            self.node.packet_drops["whois_refused"] += 1
            target = None  # answered as if unknown: the answer says nothing either way
        if target is None:
            self.node.tx.send_message(asker, WhoisAnswer(address), now)
            return
        answer = WhoisAnswer(address, target.identity.public_text(),
                             tuple(self.endpoints_of(target, now)))
        self.node.tx.send_message(asker, answer, now)
        if target.current is not None:
            # Tell the target too, so both sides send at once (opens NAT mappings both ways).
            endpoints = tuple(self.endpoints_of(asker, now))
            intro = Introduction(asker.identity.public_text(), endpoints)
            self.node.tx.send_message(target, intro, now)

    def answer_address_query(self, peer: Peer, message: AddressQuery, path: Path | None,
                             now: float) -> None:  # fmt: skip
        if not peer.networks or path is None:
            self.node.packet_drops["address_query_refused"] += 1
            return
        seen = (f"{path.endpoint[0]}/{path.endpoint[1]}" if isinstance(path, DirectPath)
                else f"relayed by {path.via}")  # fmt: skip
        addresses = (ipaddress.ip_address(a) for a in self.node.paths.own_ips)
        exits = tuple(str(a) for a in sorted((a for a in addresses if not a.is_link_local),
                                             key=lambda a: (a.version, a)))[:8]  # fmt: skip
        forwards = not self.node.exit_networks.isdisjoint(peer.networks)
        answer = AddressAnswer(message.query_id, seen, exits, forwards)
        self.node.tx.send_message(peer, answer, now)

    def endpoints_of(self, peer: Peer, now: float) -> list[str]:
        """Where a peer is reachable directly ("ip/port"): node/roots.py says which; where it
        was last heard first."""
        paths = sorted(peer.paths.values(), key=lambda p: -p.last_received)
        return advertised_endpoints(paths, now, window(peer, now))
