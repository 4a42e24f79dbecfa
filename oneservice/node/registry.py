"""The peers we know and the networks that name them: one home for both.

Peers by address and by key, the networks as their configs say (members filtered by who holds
each address: node/vouching.py), and the choice of gateway per default route. A config changes
here, once: members become kept peers, removed members are told goodbye and forgotten, and
peers that no network names any more become transient.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from ..identity import Identity
from ..messages import Goodbye
from ..network.config import NetworkConfig
from .admission import IdentityKey
from .context import NodeContext
from .lifecycle import Event
from .paths import Endpoint
from .peer import Peer, is_wanted
from .prefixes import PrefixTable
from .timing import EAGER_NETWORK_MEMBERS
from .vouching import Holder, choose_holders


class PeerRegistry:
    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self.peers: dict[str, Peer] = {}
        self.by_static: dict[bytes, Peer] = {}  # X25519 public key -> peer
        self.networks: dict[str, PrefixTable] = {}
        self.virtual_subnets: tuple = ()  # every subnet of every network: never a path
        # Network id -> packed address length -> the gateway its default goes through now:
        # the one home of that choice, shared with the network's PrefixTable (set_gateways).
        self.gateways_in_use: dict[str, dict[int, str]] = {}
        # The configs as given (set_networks): their members are filtered by who holds each
        # address (node/vouching.py), and filtered again when a dispute is settled.
        self.configs: list[NetworkConfig] = []
        self.disputed: set[IdentityKey] = set()  # identities being checked for vouching
        self.refused_member_identities = 0  # claims refused in the networks as they are now
        self.forged_identities = 0  # vouched identities found not to match their address

    def set_networks(self, configs: Iterable[NetworkConfig], now: float) -> None:
        """Replace the set of networks; peers in none of them are forgotten. A config's
        members are vouched for by its controller: node/vouching.py says which identity holds
        each address, and which to check first (identity_requests) when sources disagree."""
        self.configs = list(configs)
        own = self.node.identity.address
        verdict = choose_holders(
            ((c.id, m.identity) for c in self.configs for m in c.members if m.address != own),
            self.holder, self.holder_of_key, self.checked,
        )  # fmt: skip
        for identity in verdict.to_check:
            key = identity.x25519_public + identity.ed25519_public
            self.disputed.add(key)
            self.node.responder.intake.identities.verify(key)
        self.refused_member_identities = len(verdict.refused)
        holders = verdict.holders
        accepted = [dataclasses.replace(c, members=tuple(
            m for m in c.members if m.address == own or holders.get(m.address) == m.identity
        )) for c in self.configs]  # fmt: skip
        self.networks = {c.id: PrefixTable(c, own, self.gateways_in_use.setdefault(c.id, {}))
                         for c in accepted}  # fmt: skip
        for network_id in set(self.gateways_in_use) - set(self.networks):
            del self.gateways_in_use[network_id]
        self.virtual_subnets = tuple(s for n in self.networks.values() for s in n.config.subnets())
        wanted: dict[str, Peer] = {}
        eager: set[str] = set()
        for network in self.networks.values():
            small = len(network.config.members) <= EAGER_NETWORK_MEMBERS + 1
            eager.update(network.routers if not small else
                         (m.address for m in network.config.members))  # fmt: skip
            for member in network.config.members:
                if member.address == self.node.identity.address:
                    continue
                peer = wanted.get(member.address) or self.peers.get(member.address)
                if peer is not None and peer.identity != member.identity:
                    # Held by another identity until now, which a check showed to be forged.
                    self.forget(peer, now)
                    peer = None
                if peer is None:
                    peer = Peer(member.identity)
                    peer.verified = self.checked(member.identity) is True
                peer.keep = True
                wanted[member.address] = peer
                # A member may send only from its own addresses (never its neighbours'), and a
                # gateway from what it is the gateway for (network.source_owner).
                peer.networks[network.config.id] = [a.ip.packed for a in member.addresses]
                peer.hints.update(member.endpoints)
        for address, peer in list(self.peers.items()):
            if address not in wanted:
                was_member = bool(peer.networks)
                peer.networks = {}
                peer.source_networks = {}
                peer.routed_networks = ()
                if peer.root or self.node.roots.lookups.holds(address):
                    continue
                peer.keep = False  # transient: kept while it talks to us, then forgotten
                self.node.schedule.touch(peer, now)
                if was_member:
                    # Removed or deauthorized: its sessions end at the revision that says so
                    # (told, so that its side ends too), not once it goes quiet, which two
                    # peers probing each other never do.
                    if peer.current is not None and peer.preferred is not None:
                        self.node.tx.send_message(peer, Goodbye(), now)
                    self.forget(peer, now)
        for address, peer in wanted.items():
            peer.networks = {
                nid: nets for nid, nets in peer.networks.items() if nid in self.networks
            }
            peer.source_networks = {
                packed: nid for nid, addresses in peer.networks.items() for packed in addresses
            }
            peer.routed_networks = tuple(
                nid for nid in peer.networks if address in self.networks[nid].routers
            )
            self.peers[address] = peer
            self.by_static[peer.identity.x25519_public] = peer
            peer.eager = address in eager
            self.node.paths.add_candidates(peer)
            self.node.schedule.touch(peer, now)
            if peer.current is None and peer.handshake is None and is_wanted(peer, now):
                self.node.machine.fire(peer, Event.NEED, now)  # reached at once

    def set_gateways(self, choices: dict[tuple[str, int], str]) -> None:
        """Which member each (network, family)'s default route goes through now: the route
        planner's choice among several gateways. Packets for the default go there, and only
        it may send from addresses that no more specific route covers."""
        for (network_id, family), gateway in choices.items():
            network = self.networks.get(network_id)
            if network is not None:
                network.use_gateway(family, gateway)
            else:  # (a network planned before its config reached us: checked when it does)
                self.gateways_in_use.setdefault(network_id, {})[4 if family == 4 else 16] = gateway

    def add_peer(self, identity: Identity, now: float) -> Peer | None:
        """A peer for an identity whose address was checked. One that a network merely vouched
        for and that differs (by address or key) was forged: it goes, and the networks are
        worked out again without it. None: another checked identity holds the address or key
        (two cannot both be genuine; the first stays)."""
        rivals = {id(p): p for p in (self.peers.get(identity.address),
                                     self.by_static.get(identity.x25519_public))
                  if p is not None and p.identity != identity}  # fmt: skip
        if any(rival.verified for rival in rivals.values()):
            return None
        for rival in rivals.values():
            self.forged_identities += 1
            self.forget(rival, now)
        peer = self.peers.get(identity.address)
        if peer is None:
            peer = self.peers[identity.address] = Peer(identity)
            self.by_static[identity.x25519_public] = peer
            self.node.schedule.touch(peer, now)
        peer.verified = True
        if rivals:
            # The networks that named the forged identity are worked out again: a checked
            # one holds the address now, so their claims are refused.
            self.set_networks(self.configs, now)
        return peer

    def identity_checked(self, key: IdentityKey, address: str | None, now: float) -> None:
        """An identity's address was derived (None: the check failed). One in dispute is
        settled: the networks are worked out again."""
        if key not in self.disputed:
            return
        self.disputed.discard(key)
        held = self.by_static.get(key[:32])
        if held is not None and held.identity.ed25519_public == key[32:]:
            held.verified = address == held.address
        if address is not None and address != self.claimed_address(key):
            self.forged_identities += 1
        self.set_networks(self.configs, now)

    def claimed_address(self, key: IdentityKey) -> str | None:
        """The address the configs give the identity with these keys."""
        for config in self.configs:
            for member in config.members:
                identity = member.identity
                if identity.x25519_public + identity.ed25519_public == key:
                    return identity.address
        return None

    def holder(self, address: str) -> Holder | None:
        peer = self.peers.get(address)
        return Holder(peer.identity, peer.verified) if peer is not None else None

    def holder_of_key(self, x25519_public: bytes) -> Holder | None:
        peer = self.by_static.get(x25519_public)
        return Holder(peer.identity, peer.verified) if peer is not None else None

    def checked(self, identity: Identity) -> bool | None:
        """Whether the identity's address was derived and matches (None: never derived)."""
        key = identity.x25519_public + identity.ed25519_public
        derived = self.node.responder.intake.identities.known(key)
        return None if derived is None else derived == identity.address

    def forget(self, peer: Peer, now: float) -> None:
        self.node.machine.fire(peer, Event.REMOVED, now)  # its sessions and handshake end
        self.node.birthday.forget(peer, now)
        self.node.schedule.forget(peer)
        self.peers.pop(peer.address, None)
        self.by_static.pop(peer.identity.x25519_public, None)
        self.node.rx.reassembly.forget_peer(peer.address)

    def reach(self, identity: Identity, endpoints: Iterable[Endpoint], now: float) -> None:
        """A node we are about to send to and may not know: a member of a network we control
        that talked to another controller process sharing our store, which holds its identity
        (from that process's checked handshake) and where it was seen. Known already: only
        the endpoints are added. Another identity holding its address or key: nothing."""
        if identity.address == self.node.identity.address:
            return
        peer = self.peers.get(identity.address)
        if peer is None:
            if identity.x25519_public in self.by_static:
                return
            peer = self.peers[identity.address] = Peer(identity)
            self.by_static[identity.x25519_public] = peer
        elif peer.identity != identity:
            return
        peer.hints.update(endpoints)
        self.node.paths.add_candidates(peer)
        self.node.schedule.touch(peer, now)
