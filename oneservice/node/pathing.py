"""Which paths each peer has and which one carries its traffic.

Paths come from our sockets (the binder's) crossed with a peer's endpoints, from what we hear
(an authenticated datagram proves its path), and from connected roots (relay paths). Probes
measure them; node/paths.py chooses. Our own addresses and our networks' subnets are never a
path's endpoint (that would send the tunnel through itself).
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections.abc import Iterable

from ..messages import LocalEndpoints, Ping, Pong, encode
from ..network.config import NetworkConfigError, parse_endpoint
from . import wire
from .context import NodeContext
from .events import SeenFromOutside
from .lifecycle import Event
from .outside import OutsideViews
from .paths import DirectPath, Endpoint, Path, RelayPath, choose_path, endpoint_of
from .peer import Peer, path_changed, probe_interval, window
from .roots import MAX_ADVERTISED_ENDPOINTS
from .timing import (
    ACTIVE_WINDOW_S,
    MAX_NEW_LOCAL_HINTS,
    NEW_LOCAL_HINTS_WINDOW_S,
    QUIET_PROBE_S,
)


class PathKeeper:
    def __init__(self, node: NodeContext) -> None:
        self.node = node
        # Our sockets, their families and ranks: the binder's table (oneservice/uplinks.py),
        # read here, never copied.
        self.uplinks = node.uplinks
        self._rank_changes_seen = 0  # (the table's count when paths were last reselected)
        # This node's own physical addresses: never a peer's endpoint (a member left over from
        # an earlier install of this machine would have it send initiations to itself forever).
        self.own_ips: frozenset[str] = frozenset()
        # Our uplinks' addresses with our port ("ip/port"), told to members of our networks
        # with where our roots see us on each socket (our public endpoint behind a NAT).
        self.own_endpoints: tuple[str, ...] = ()
        self.port = 0  # our sockets' port (the binder's)
        # Where roots see us, per socket and per root (node/outside.py); ``public`` is the
        # endpoint members are told, binder socket id -> "ip/port".
        self.outside = OutsideViews()
        self.public = self.outside.public
        self.mapped: dict[int, str] = {}  # binder socket id -> "ip/port" a router maps to it
        # Handovers: a peer's traffic moved from one working path to another, and how long
        # the old one had been silent then (GET /metrics).
        self.handovers = 0
        self.last_handover_silence = 0.0
        self.refused_hints: set[tuple[str, Endpoint]] = set()

    def socket_up(self, socket_id: int, now: float) -> None:
        """A new binder socket (in the table now): probe every peer's endpoints over it at
        once."""
        for peer in self.node.registry.peers.values():
            self.add_candidates(peer)
            self.probe(peer, now, only_socket=socket_id)

    def socket_down(self, socket_id: int, now: float) -> None:
        """The socket's interface is gone: its paths die now, traffic moves at once."""
        self.outside.forget(socket_id)
        self.mapped.pop(socket_id, None)
        self.node.birthday.uplink_down(socket_id)
        for peer in self.node.registry.peers.values():
            gone = [k for k, p in peer.paths.items()
                    if isinstance(p, DirectPath) and p.socket_id == socket_id]  # fmt: skip
            for key in gone:
                del peer.paths[key]
            if peer.preferred is not None and peer.preferred.key in gone:
                peer.preferred = None
                self.reselect(peer, now)
                self.probe(peer, now)

    def socket_readdressed(self, socket_id: int, now: float) -> None:
        """Our address behind a socket changed: tell peers at once (they follow the roam)."""
        for peer in self.node.registry.peers.values():
            self.probe(peer, now, only_socket=socket_id)

    def set_own_addresses(self, addresses: Iterable[str], now: float, port: int = 0) -> None:
        """The addresses of this node's uplinks (as the binder sees them): paths to them go.
        With our ``port``, members of our networks are told them (tell_local_endpoints)."""
        ips = [ipaddress.ip_address(a.split("%")[0]) for a in addresses]
        self.port = port or self.port
        self.own_ips = frozenset(ip.compressed for ip in ips)
        for peer in self.node.registry.peers.values():
            stale = [k for k, p in peer.paths.items()
                     if isinstance(p, DirectPath) and self.own(p.endpoint)]  # fmt: skip
            for key in stale:
                if peer.preferred is peer.paths[key]:
                    peer.preferred = None
                del peer.paths[key]
            if stale and peer.preferred is None:
                self.reselect(peer, now)
        usable = sorted((ip for ip in ips if not (ip.is_link_local or ip.is_loopback)),
                        key=lambda ip: (ip.version, ip))  # fmt: skip
        endpoints = tuple(f"{ip.compressed}/{port}" for ip in usable if port)
        endpoints = endpoints[:MAX_ADVERTISED_ENDPOINTS]
        if endpoints != self.own_endpoints:
            self.own_endpoints = endpoints
            self.tell_everyone(now)

    def seen_by_root(self, socket_id: int, root: str, seen: str, now: float) -> None:
        """A root's answer says where it sees us over this socket. When that moves (our NAT
        got a new public address, a redial) the peers cannot know: we tell the members we
        have sessions with at once, and probe every peer over that socket (both sides then
        send, so filtering NATs let each other in). Members are told again when the roots'
        views change what we know of our NAT (hard or not)."""
        try:
            parse_endpoint(seen, "endpoint")
        except NetworkConfigError:
            return  # (told on to members, who would refuse the whole list)
        if socket_id not in self.uplinks.families:
            return
        first = socket_id not in self.public
        hard_before = self.hard(socket_id)
        if self.outside.seen(socket_id, root, seen, self._own_ip(seen)):
            self.node.events.append(SeenFromOutside(socket_id, self.behind_nat(socket_id)))
            self.tell_everyone(now)
            if not first:
                self.socket_readdressed(socket_id, now)
        elif self.hard(socket_id) != hard_before:
            self.tell_everyone(now)

    def behind_nat(self, socket_id: int) -> bool:
        """Whether a root sees us over this socket at an address that is not our own."""
        seen = self.public.get(socket_id)
        return seen is not None and not self._own_ip(seen)

    def _own_ip(self, seen: str) -> bool:
        """Whether an "ip/port" a root saw us at is one of our own addresses."""
        ip = ipaddress.ip_address(seen.rpartition("/")[0].split("%")[0])
        return ip.compressed in self.own_ips

    def hard(self, socket_id: int) -> bool:
        """Whether our NAT on this socket gives each destination a port of its own: two roots
        see us at different ports (node/outside.py). With one root's view only, a port other
        than ours is taken for it: a NAT that maps one port for all, but not ours, looks the
        same, and is then taken for hard (with a hard peer, neither side tries birthday)."""
        if not self.behind_nat(socket_id):
            return False
        varies = self.outside.varies(socket_id)
        if varies is not None:
            return varies
        return self.public[socket_id].rpartition("/")[2] != str(self.port)

    def nat_view(self) -> dict[int, dict]:
        """Per socket behind a NAT: whether it maps per destination (hard), and whether two
        roots' views proved that (else one root's port says it)."""
        return {s: {"hard": self.hard(s), "provenByRoots": self.outside.varies(s) is not None}
                for s in sorted(self.public) if self.behind_nat(s)}  # fmt: skip

    def set_port_mapping(self, socket_id: int, endpoint: str | None, now: float) -> None:
        if endpoint is None:
            self.mapped.pop(socket_id, None)
        elif socket_id in self.uplinks.families:
            try:
                parse_endpoint(endpoint, "endpoint")
            except NetworkConfigError:
                return
            self.mapped[socket_id] = endpoint
        self.tell_everyone(now)

    def advertised(self) -> tuple[str, ...]:
        """What members are told of us: our own addresses, where our routers map a port to
        us, then where roots see us."""
        found = dict.fromkeys([*self.own_endpoints, *sorted(self.mapped.values()),
                               *sorted(self.public.values())])  # fmt: skip
        return tuple(found)[:MAX_ADVERTISED_ENDPOINTS]

    def tell_everyone(self, now: float) -> None:
        for peer in self.node.registry.peers.values():
            self.tell_local_endpoints(peer, now)

    def uplinks_ranked(self, now: float) -> None:
        """The table's ranks may have changed (which uplinks the OS or the user prefers):
        paths through a better one are taken as soon as it works, RTT decides between
        equals."""
        if self.uplinks.rank_changes == self._rank_changes_seen:
            return
        self._rank_changes_seen = self.uplinks.rank_changes
        for peer in self.node.registry.peers.values():
            self.reselect(peer, now)

    def own(self, endpoint: Endpoint) -> bool:
        """This host in any spelling (loopback, unspecified, our addresses), or no one host
        (multicast): never a peer's endpoint, whoever names it."""
        try:
            ip = ipaddress.ip_address(endpoint[0].split("%")[0])
        except ValueError:
            return False
        return (ip.is_loopback or ip.is_unspecified or ip.is_multicast
                or ip.compressed in self.own_ips)  # fmt: skip

    def routes_changed(self, now: float) -> None:
        """Routes moved: a path may now fail one way only (our packets go to a dead gateway
        while the peer's still arrive), so only answered probes count as proof."""
        for peer in self.node.registry.peers.values():
            if peer.current is not None:
                self.probe(peer, now, strict=True)

    def add_relay_paths(self, peer: Peer) -> None:
        """Every peer that is not a root can also be reached through each connected root."""
        if peer.root:
            return
        for root in self.node.roots.roots.values():
            if root.current is not None and root.address not in peer.paths:
                peer.paths[root.address] = RelayPath(root.address, peer.address)

    def tell_local_endpoints(self, peer: Peer, now: float) -> None:
        """Tell a member of a shared network where we are on our own side of any NAT (never a
        stranger: it learns our private addresses), once per change."""
        advertised = self.advertised()
        mapped = tuple(e for e in advertised if e in self.mapped.values())
        message = LocalEndpoints(advertised, mapped, any(self.hard(s) for s in self.public))
        if (peer.current is None or not peer.networks or peer.root
                or peer.told_local == message):  # fmt: skip
            return
        peer.told_local = message
        self.node.tx.send_message(peer, message, now)

    def receive_local_endpoints(self, peer: Peer, message: LocalEndpoints, now: float) -> None:
        """A member's own addresses: candidates to probe now (the same LAN goes direct)."""
        if not peer.networks:
            self.node.packet_drops["local_endpoints_refused"] += 1
            return
        listed = message.endpoints[:MAX_ADVERTISED_ENDPOINTS]
        try:
            told = frozenset(parse_endpoint(e, "endpoint") for e in listed)
        except NetworkConfigError:
            self.node.packet_drops["local_endpoints_invalid"] += 1
            return
        self.tell_local_endpoints(peer, now)  # (it may have met us before it knew our network)
        peer.hard = message.hard
        peer.mapped_hints = tuple(parse_endpoint(e, "endpoint")
                                  for e in message.mapped if e in listed)  # fmt: skip
        if told == peer.local_hints:
            return
        # Each new endpoint is probed: a member may not make us probe address after address.
        recent = [t for t in peer.local_hints_new if now - t < NEW_LOCAL_HINTS_WINDOW_S]
        new = told - peer.local_hints
        if len(recent) + len(new) > MAX_NEW_LOCAL_HINTS:
            self.node.packet_drops["local_endpoints_too_often"] += 1
            return
        peer.local_hints_new = recent + [now] * len(new)
        stale = peer.local_hints - told - peer.hints
        peer.local_hints = told
        for key, path in list(peer.paths.items()):
            if (isinstance(path, DirectPath) and path.endpoint in stale
                    and path is not peer.preferred and not path.alive(now)):  # fmt: skip
                del peer.paths[key]
        before = set(peer.paths)
        self.add_candidates(peer)
        for key in set(peer.paths) - before:
            self.probe_path(peer, peer.paths[key], now)

    def add_candidates(self, peer: Peer) -> None:
        known = (peer.hints | peer.local_hints
                 | {p.endpoint for p in peer.paths.values() if isinstance(p, DirectPath)})
        for endpoint in known:
            if self.inside_virtual_network(endpoint) or self.own(endpoint):
                self.refused_hints.add((peer.address, endpoint))
                continue
            family = socket.AF_INET6 if ":" in endpoint[0] else socket.AF_INET
            for socket_id, socket_family in self.uplinks.families.items():
                if socket_family == family and (socket_id, endpoint) not in peer.paths:
                    peer.paths[(socket_id, endpoint)] = DirectPath(socket_id, endpoint)

    def heard(self, peer: Peer, socket_id: int | None, address: tuple | None,
              via: str | None, now: float) -> Path | None:  # fmt: skip
        """An authenticated packet came over (socket, address), or through root ``via``: that
        path works."""
        if via is not None:
            path = peer.paths.get(via)
            if path is None:
                path = peer.paths[via] = RelayPath(via, peer.address)
        else:
            endpoint = endpoint_of(address)
            path = peer.paths.get((socket_id, endpoint))
            if path is None:
                if ((socket_id not in self.uplinks.families
                        and not self.node.birthday.owns(socket_id, peer))
                        or self.inside_virtual_network(endpoint)):  # fmt: skip
                    # The datagram itself was fine (and counted as accepted); only the path is
                    # not kept.
                    self.node.packet_drops["path_refused"] += 1
                    return None
                path = DirectPath(socket_id, endpoint, learned=endpoint not in peer.hints)
                peer.paths[path.key] = path
            if path.last_received == -math.inf:  # its first word: a birthday attempt's doing?
                self.node.birthday.first_heard(peer, path, now)
        path.last_received = now
        peer.last_heard = now
        if path is peer.preferred and not path.strict:
            return path  # just heard from, so alive: the common case, once per packet
        self.node.schedule.touch(peer, now)
        if peer.preferred is None or not peer.preferred.alive(now, window(peer, now)):
            self.reselect(peer, now)
        return path

    def inside_virtual_network(self, endpoint: Endpoint) -> bool:
        """No path may run through one of our own networks: it would tunnel the tunnel. (A
        relay path has no endpoint: the root's own path was checked.)"""
        try:
            ip = ipaddress.ip_address(endpoint[0])
        except ValueError:
            return True
        return any(ip.version == s.version and ip in s for s in self.node.registry.virtual_subnets)

    def probe(
        self, peer: Peer, now: float, only_socket: int | None = None, strict: bool = False
    ) -> None:
        if peer.current is None:
            self.node.machine.fire(peer, Event.NEED, now)
            return
        for path in peer.paths.values():
            if only_socket is not None and not (
                isinstance(path, DirectPath) and path.socket_id == only_socket
            ):
                continue
            self.probe_path(peer, path, now, strict)

    def probe_path(self, peer: Peer, path: Path, now: float, strict: bool = False) -> None:
        path.strict = path.strict or strict
        self.node.schedule.touch(peer, now)
        peer.probe_counter = (peer.probe_counter + 1) & 0x7FFFFFFF
        path.probe_leaving(peer.probe_counter, now)
        # "p": sent on our preferred path. The peer then answers on it too, so both
        # directions move together when we change uplink or address.
        ping = encode(Ping(path.probe_id, path is peer.preferred, _endpoint_text(path), thin=True))
        self.node.tx.send_on(peer, path, wire.TYPE_CONTROL, ping, now)

    @staticmethod
    def peer_prefers(peer: Peer, path: Path) -> None:
        for other in peer.paths.values():
            other.peer_prefers = other is path

    def follow_sender(self, peer: Peer, path: Path | None, now: float) -> None:
        """An authenticated datagram that the peer sends on its preferred path (data, relay
        frames, control messages other than probes and their answers) came over ``path``:
        that is where the peer is now (it roamed, or its NAT changed address), as WireGuard
        roams."""
        if path is not None and path is not peer.preferred:
            self.peer_prefers(peer, path)
            self.follow(peer, path, now)

    def follow(self, peer: Peer, path: Path, now: float) -> None:
        """Use the path the peer uses: it knows first when its side of a path changed. The
        path we leave may be dead: probe the others now so none is switched back to blindly."""
        if path.strict and not path.alive(now, window(peer, now)):
            return  # its packets reach us, but ours were shown not to leave over it
        if choose_path(peer.paths.values(), peer.preferred, now, window(peer, now),
                       self.uplinks.ranks) is not path:  # fmt: skip
            return  # ours is better placed (the uplink this OS prefers): the peer follows us
        self._moved(peer, path, now)
        self.probe(peer, now)

    def _moved(self, peer: Peer, path: Path | None, now: float) -> None:
        """The peer's traffic takes ``path`` from now on (None: none works)."""
        old = peer.preferred
        if old is not None and path is not None:
            self.handovers += 1
            self.last_handover_silence = max(0.0, now - old.last_received)
        peer.preferred = path
        self.node.schedule.touch(peer, now)
        self.node.events.append(path_changed(peer, path))

    def mark_traffic(self, peer: Peer, now: float) -> None:
        waking = now - peer.last_traffic >= ACTIVE_WINDOW_S
        if now - peer.last_traffic >= QUIET_PROBE_S:
            # Sending again after a pause: a quiet path may be due a probe sooner. (Not per
            # packet: a steady flow moves no deadline earlier.)
            self.node.schedule.touch(peer, now)
        peer.last_traffic = now
        if waking and peer.current is not None:
            # Paths were checked every 20 s while idle; traffic wants them proven now.
            peer.next_probe = now + probe_interval(peer, now)
            self.probe(peer, now)

    def reselect(self, peer: Peer, now: float) -> None:
        chosen = choose_path(peer.paths.values(), peer.preferred, now, window(peer, now),
                             self.uplinks.ranks)  # fmt: skip
        if chosen is not peer.preferred:
            self._moved(peer, chosen, now)
            if chosen is not None and peer.current is not None:
                # Said at once on the new path, so the peer's traffic to us moves over too
                # instead of at its next probe.
                self.probe_path(peer, chosen, now)
                if peer.queue:
                    self.node.tx.flush_queue(peer, now)
            elif chosen is None:
                peer.no_path_since = now  # Upkeep.tick: a new handshake if it stays so

    def receive_probe(self, peer: Peer, message: Ping | Pong, path: Path | None,
                      now: float) -> None:  # fmt: skip
        if path is None:
            return
        if peer.root and message.seen and isinstance(path, DirectPath):
            self.seen_by_root(path.socket_id, peer.address, message.seen, now)
        if isinstance(message, Ping):
            if message.preferred:
                self.peer_prefers(peer, path)
                if path is not peer.preferred:
                    self.follow(peer, path, now)  # the peer moved (new uplink or address)
            pong = encode(Pong(message.probe_id, _endpoint_text(path), thin=True))
            self.node.tx.send_on(peer, path, wire.TYPE_CONTROL, pong, now)
        elif message.probe_id == path.probe_id and path.probe_sent > -math.inf:
            path.record_rtt(now - path.probe_sent)
            path.probe_sent = -math.inf
            path.strict = False
            self.node.schedule.touch(peer, now)  # no probe timeout to wait for any more
            self.reselect(peer, now)

    def set_watched(self, addresses: Iterable[str], now: float) -> None:
        """The peers whose silence must be noticed within a second, traffic or not (a full
        tunnel's gateways): their paths are checked as if they carried traffic, and more
        often. Replaces the previous set."""
        wanted = set(addresses)
        for address, peer in self.node.registry.peers.items():
            watched = address in wanted
            if watched != peer.watched:
                peer.watched = watched
                self.node.schedule.touch(peer, now)
                if watched:
                    self.mark_traffic(peer, now)  # its paths proven now, not in 20 s


def _endpoint_text(path: Path) -> str:
    """Where a path leads ("ip/port"), as probes tell the far end; empty for a relay path."""
    return f"{path.endpoint[0]}/{path.endpoint[1]}" if isinstance(path, DirectPath) else ""
