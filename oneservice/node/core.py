"""The node core: peers, handshakes, sessions, paths, timers. No sockets and no clock.

Like aioquic's QuicConnection: the service feeds it datagrams (with the binder socket they
arrived on), IP packets from the taps, socket changes and the time; it reads back datagrams to
send (on a chosen socket), packets for the taps, events, and when to call it next. Handshake
initiations wait in a queue for process_handshakes (call it before reading datagrams out),
and unknown initiators' identities for identity_derived (node/admission.py). Anything
malformed, forged, replayed or unknown is dropped and counted in ``drops`` by reason; nothing
raises out of the receive path.
"""

from __future__ import annotations

import dataclasses
import heapq
import ipaddress
import itertools
import math
import secrets
import socket
import struct
from collections import Counter, deque
from collections.abc import Iterable

from ..identity import Identity
from ..messages import (
    AddressAnswer,
    AddressQuery,
    ChunkRequest,
    ConfigAnswer,
    ConfigDelta,
    ConfigRequest,
    Goodbye,
    Introduction,
    Message,
    MessageError,
    Ping,
    Pong,
    Whois,
    WhoisAnswer,
    decode,
    encode,
)
from ..network.config import NetworkConfig
from ..offload import SuperPacket
from . import chunks, cookies, wire
from .admission import IdentityKey
from .events import (
    ControlReceived,
    NodeEvent,
    PathChanged,
    PathView,
    PeerConnected,
    PeerView,
)
from .handshakes import Arrival, Initiation, Intake, ReadInitiation, initiation
from .lifecycle import Event, Send, State, transition
from .lookups import Lookups
from .noise import HandshakeError
from .paths import (
    IDLE_PATH_ALIVE_S,
    PATH_ALIVE_S,
    DirectPath,
    Endpoint,
    Path,
    PathKey,
    RelayPath,
    choose_path,
)
from .prefixes import PrefixTable
from .roots import advertised_endpoints, may_tell, read_announcement
from .session import Session
from .toobig import RELAYED_PACKET_MAX, fragment_ipv4, too_big_answer
from .vouching import Holder, choose_holders

# Handshakes: retried quickly (a lost initiation should not cost a user seconds), abandoned
# when nobody answers for a while (the queue is then dropped, counted).
HANDSHAKE_RETRY_S = 1.0
HANDSHAKE_GIVE_UP_S = 30.0
UNREACHABLE_RETRY_S = 5.0
# Sessions are renewed after two minutes and refused after three (as WireGuard).
REKEY_AFTER_S = 120.0
REJECT_AFTER_S = 180.0
# Probing: fast while a peer carries traffic (fast, silent-failure detection), slow when idle.
ACTIVE_PROBE_INTERVAL_S = 1.0
# A full tunnel's gateway (set_watched) is probed twice as often: its silence is then noticed
# within a second (a probe interval and a probe timeout) even while nothing comes back.
WATCHED_PROBE_INTERVAL_S = 0.5
IDLE_PROBE_INTERVAL_S = 20.0
ACTIVE_WINDOW_S = 10.0
# An idle path needs one prober, not two: a side that heard the peer's probe (or anything)
# within half an idle interval skips its own, and looks again this long after the peer's
# next one is due, so that the peer's comes first and the two do not stay in step.
IDLE_PROBE_YIELD_S = 1.0
# A learned endpoint nobody heard from for this long is forgotten.
LEARNED_PATH_EXPIRY_S = 120.0
# A peer whose deadline, just after its turn, is still not in the future is looked at again
# this much later (a safety net: every deadline names work that its turn does).
OVERDUE_RETRY_S = 0.25
# Sending while the preferred path has been silent this long earns it an early probe.
QUIET_PROBE_S = 0.3
# Sending while no path works probes the peer's paths at most this often.
NO_PATH_PROBE_INTERVAL_S = 0.25
# No path working with the current session this long: a new handshake (the far end may have
# lost the session), for a peer that is needed (_needed). Longer than a roam's probes take,
# so a handover is left to them.
NO_PATH_HANDSHAKE_S = 1.5
# A member of a network of at most this many members (us aside) is reached at once and kept
# connected. In a bigger one only those needed are (traffic, gateways, roots); the rest when
# traffic goes to them or they reach us: handshakes to thousands at once, retried every
# second through a root, would flood the member, the root, and the members (ZeroTier and
# Tailscale connect on demand too).
EAGER_NETWORK_MEMBERS = 64
# Woken this much after a deadline, so that it has passed (float time, loop granularity).
DEADLINE_SLACK_S = 0.002
# Packets waiting for a session: enough for a TCP window's first burst, bounded for memory.
MAX_QUEUED_PACKETS = 256
# Nodes we never heard of (joiners at a controller, clients of a root): at most this many kept
# at once (what an initiation may cost before that: node/admission.py).
MAX_TRANSIENT_PEERS = 4096
# A transient peer (not a member, root or anyone we asked for) is forgotten when idle this long.
TRANSIENT_IDLE_S = 300.0
# With MAX_TRANSIENT_PEERS kept, the one idle longest makes room for a newcomer if it has been
# idle at least this long (one that is talking now is never pushed out).
TRANSIENT_EVICT_IDLE_S = 10.0

_INDEX = struct.Struct("<I")
_RESPONSE_INDEXES = struct.Struct("<II")
_DATA_FIELDS = struct.Struct("<IQ")
_TRANSPORT_TYPES = frozenset({
    wire.TYPE_DATA, wire.TYPE_CONTROL, wire.TYPE_RELAY, wire.TYPE_RELAYED,
    wire.TYPE_CONTROL_CHUNK,
})  # fmt: skip


class Peer:
    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.address = identity.address
        self.hints: set[Endpoint] = set()
        self.paths: dict[PathKey, Path] = {}  # by Path.key
        self.preferred: Path | None = None
        self.current: Session | None = None  # what we send on
        self.previous: Session | None = None  # still accepted while the peer switches over
        self.unconfirmed: Session | None = None  # responder side, until the initiator uses it
        self.handshake: Initiation | None = None  # ours, in flight
        self.handshake_index = 0
        self.handshake_sent = -math.inf
        self.cookie_answered: set[Endpoint] = set()
        self.cookies: dict[Endpoint, tuple[bytes, float]] = {}  # endpoint -> (cookie, since)
        self.handshake_started = -math.inf
        self.last_initiation_timestamp = b""
        self.queue: deque[tuple[int, bytes, int]] = deque()  # kind, payload, hint
        self.last_traffic = -math.inf
        self.last_data_received = -math.inf  # the peer's own packets (not our probes' answers)
        self.next_probe = -math.inf
        self.no_path_probed = -math.inf  # when sending found no working path and probed
        self.no_path_since = math.inf  # when its last working path went (inf: one works)
        self.probe_counter = 0
        self.networks: dict[str, list] = {}  # network id -> networks it may send from
        # keep: we maintain a session (member, root, or someone we asked for). Otherwise the
        # peer is transient: it reached us, and is forgotten when it goes quiet.
        self.keep = False
        # Its identity was checked against its address (a handshake's check, local.conf, a
        # root's announcement): otherwise only a network's controller vouches for it.
        self.verified = False
        self.root = False
        # It reached us while in none of our networks (we are its root): a whois may find it.
        self.findable = False
        self.last_heard = -math.inf
        # Its own addresses as packed bytes -> network id: one dict look-up per packet.
        self.source_networks: dict[bytes, str] = {}
        # The networks in which it is the gateway of a route: other sources are checked there.
        self.routed_networks: tuple[str, ...] = ()
        # When its turn in handle_timer is due (NodeCore._deadline), and the time of its
        # entry in the timer heap (inf: none). The entry may be earlier than ``due``: the
        # deadline moved later, and the entry is moved when it comes up.
        self.due = math.inf
        self.scheduled = math.inf
        self.watched = False  # a full tunnel's gateway: always active (set_watched)
        # Reached at once and kept connected, traffic or not: a member of a small network, or
        # the gateway of a route (EAGER_NETWORK_MEMBERS). Others are reached on demand.
        self.eager = False


class NodeCore:
    def __init__(
        self, identity: Identity, *, now: float, wall_time: float, relay: bool = False
    ) -> None:
        self.identity = identity
        # Relay for others (roots do): forward their datagrams to peers we have sessions with.
        self.relay = relay
        self._static = identity.x25519_private_key()
        # Initiation timestamps must grow across restarts: wall time, advanced by our clock.
        self._wall_offset = wall_time - now
        self.sockets: dict[int, int] = {}  # binder socket id -> address family
        self.peers: dict[str, Peer] = {}
        self._peers_by_static: dict[bytes, Peer] = {}
        self._sessions: dict[int, Session] = {}
        self._handshakes: dict[int, Peer] = {}
        self.networks: dict[str, PrefixTable] = {}
        self._virtual_subnets: tuple = ()
        # Runs of datagrams, each to one endpoint from one socket, and the size all of them
        # but a shorter last one have, where that is known (0: not known): binder.gso_batches.
        self._datagrams: list[tuple[int, Endpoint, list[bytes], int]] = []
        # Per network, in arrival order: (IP packet, partial-checksum hint). Grouped here
        # because each network's tap writes its own batch.
        self._packets: dict[str, list[tuple[bytes, int]]] = {}
        self._events: deque[NodeEvent] = deque()
        # Received datagrams refused, by reason. Every datagram received is either accepted
        # (authenticated) or counted here once, so the two add up to what the binder delivered.
        self.drops: Counter[str] = Counter()
        self.accepted = 0
        # IP packets refused, by reason: from taps (no route, queue full, ...) and inside
        # accepted datagrams (source not allowed, malformed control, ...).
        self.packet_drops: Counter[str] = Counter()
        self.refused_hints: set[tuple[str, Endpoint]] = set()
        # This node's own physical addresses: never a peer's endpoint (a member left over from
        # an earlier install of this machine would have it send initiations to itself forever).
        self.own_ips: frozenset[str] = frozenset()
        self.evicted_transient_peers = 0
        # Binder socket id -> rank (lower first): the metric of its uplink's default route.
        self.socket_ranks: dict[int, int] = {}
        self._intake = Intake(self._static, identity.x25519_public, now, self.drops)
        self.chunks_resent = 0
        self._lookups = Lookups(self.packet_drops)
        self._gateway_choices: dict[tuple[str, int], str] = {}
        self._reassembly = chunks.Reassembly(self.packet_drops)
        self._sent_chunks = chunks.SentChunks()
        self._next_message_id = secrets.randbits(32)
        self._roots: dict[str, Peer] = {}
        # The configs as given (set_networks): their members are filtered by who holds each
        # address (node/vouching.py), and filtered again when a dispute is settled.
        self._configs: list[NetworkConfig] = []
        self._disputed: set[IdentityKey] = set()  # identities being checked for vouching
        self.refused_member_identities = 0  # claims refused in the networks as they are now
        self.forged_identities = 0  # vouched identities found not to match their address
        # Timers from deadlines: a heap of (due, order, peer); peers whose deadlines may have
        # moved earlier wait in _touched until the next next_timer or handle_timer.
        self._timers: list[tuple[float, int, Peer]] = []
        self._timer_order = itertools.count()
        self._touched: set[Peer] = set()
        self._clock = now  # the latest time any call told us

    # --- configuration -----------------------------------------------------------------------

    def set_networks(self, configs: Iterable[NetworkConfig], now: float) -> None:
        """Replace the set of networks; peers in none of them are forgotten. A config's
        members are vouched for by its controller: node/vouching.py says which identity holds
        each address, and which to check first (identity_requests) when sources disagree."""
        self._configs = list(configs)
        own = self.identity.address
        verdict = choose_holders(
            ((c.id, m.identity) for c in self._configs for m in c.members if m.address != own),
            self._holder, self._holder_of_key, self._checked,
        )  # fmt: skip
        for identity in verdict.to_check:
            key = identity.x25519_public + identity.ed25519_public
            self._disputed.add(key)
            self._intake.identities.verify(key)
        self.refused_member_identities = len(verdict.refused)
        holders = verdict.holders
        accepted = [dataclasses.replace(c, members=tuple(
            m for m in c.members if m.address == own or holders.get(m.address) == m.identity
        )) for c in self._configs]  # fmt: skip
        self.networks = {c.id: PrefixTable(c, own) for c in accepted}
        self.set_gateways(self._gateway_choices)
        self._virtual_subnets = tuple(s for n in self.networks.values() for s in n.config.subnets())
        wanted: dict[str, Peer] = {}
        eager: set[str] = set()
        for network in self.networks.values():
            small = len(network.config.members) <= EAGER_NETWORK_MEMBERS + 1
            eager.update(network.routers if not small else
                         (m.address for m in network.config.members))  # fmt: skip
            for member in network.config.members:
                if member.address == self.identity.address:
                    continue
                peer = wanted.get(member.address) or self.peers.get(member.address)
                if peer is not None and peer.identity != member.identity:
                    # Held by another identity until now, which a check showed to be forged.
                    self._forget(peer)
                    peer = None
                if peer is None:
                    peer = Peer(member.identity)
                    peer.verified = self._checked(member.identity) is True
                peer.keep = True
                wanted[member.address] = peer
                # A member may send only from its own addresses (never its neighbours'), and a
                # gateway from what it is the gateway for (network.source_owner).
                peer.networks[network.config.id] = [ipaddress.ip_network(a.ip)
                                                    for a in member.addresses]  # fmt: skip
                peer.hints.update(member.endpoints)
        for address, peer in list(self.peers.items()):
            if address not in wanted:
                was_member = bool(peer.networks)
                peer.networks = {}
                peer.source_networks = {}
                peer.routed_networks = ()
                if peer.root or self._lookups.holds(address):
                    continue
                peer.keep = False  # transient: kept while it talks to us, then forgotten
                self._touch(peer, now)
                if was_member:
                    # Removed or deauthorized: its sessions end at the revision that says so
                    # (told, so that its side ends too), not once it goes quiet, which two
                    # peers probing each other never do.
                    if peer.current is not None and peer.preferred is not None:
                        self._send_message(peer, Goodbye(), now)
                    self._forget(peer)
        for address, peer in wanted.items():
            peer.networks = {
                nid: nets for nid, nets in peer.networks.items() if nid in self.networks
            }
            peer.source_networks = {
                net.network_address.packed: nid
                for nid, nets in peer.networks.items()
                for net in nets
                if net.prefixlen == net.max_prefixlen
            }
            peer.routed_networks = tuple(
                nid for nid in peer.networks if address in self.networks[nid].routers
            )
            self.peers[address] = peer
            self._peers_by_static[peer.identity.x25519_public] = peer
            peer.eager = address in eager
            self._add_candidate_paths(peer)
            self._touch(peer, now)
            if peer.current is None and peer.handshake is None and _wanted(peer, now):
                self._lifecycle(peer, Event.NEED, now)  # reached at once

    def set_gateways(self, choices: dict[tuple[str, int], str]) -> None:
        """Which member each (network, family)'s default route goes through now: the route
        planner's choice among several gateways. Packets for the default go there, and only
        it may send from addresses that no more specific route covers."""
        self._gateway_choices = dict(choices)
        for (network_id, family), gateway in choices.items():
            network = self.networks.get(network_id)
            if network is not None:
                network.use_gateway(family, gateway)

    def set_roots(self, roots: Iterable[tuple[Identity, Iterable[Endpoint]]], now: float) -> None:
        """Roots answer identity look-ups, introduce peers and relay; we stay connected.
        Replaces the previous set: a root no longer listed becomes an ordinary peer (kept only
        if a network still lists it)."""
        roots = list(roots)
        listed = {identity.address for identity, _ in roots}
        members = {m.address for n in self.networks.values() for m in n.config.members}
        for address, peer in self.peers.items():
            self._touch(peer, now)
            if peer.root and address not in listed:
                peer.root = False
                peer.keep = address in members
                self._roots.pop(address, None)
            relayed = [k for k, path in peer.paths.items()
                       if path.via is not None and path.via not in listed]  # fmt: skip
            for key in relayed:
                del peer.paths[key]
            if relayed:
                self._reselect(peer, now)  # its preferred path may have been one of them
        for identity, endpoints in roots:
            if identity.address == self.identity.address:
                continue
            peer = self._add_peer(identity, now)
            if peer is None:
                continue  # another checked identity holds its address or key
            peer.root = peer.keep = True
            self._roots[identity.address] = peer
            # A root is reached directly, never through another root.
            peer.paths = {k: p for k, p in peer.paths.items() if p.via is None}
            if peer.preferred is not None and peer.preferred.via is not None:
                peer.preferred = None
            peer.hints.update(endpoints)
            self._add_candidate_paths(peer)
            if peer.current is None:
                self._lifecycle(peer, Event.NEED, now)

    def _add_peer(self, identity: Identity, now: float) -> Peer | None:
        """A peer for an identity whose address was checked. One that a network merely vouched
        for and that differs (by address or key) was forged: it goes, and the networks are
        worked out again without it. None: another checked identity holds the address or key
        (two cannot both be genuine; the first stays)."""
        rivals = {id(p): p for p in (self.peers.get(identity.address),
                                     self._peers_by_static.get(identity.x25519_public))
                  if p is not None and p.identity != identity}  # fmt: skip
        if any(rival.verified for rival in rivals.values()):
            return None
        for rival in rivals.values():
            self.forged_identities += 1
            self._forget(rival)
        peer = self.peers.get(identity.address)
        if peer is None:
            peer = self.peers[identity.address] = Peer(identity)
            self._peers_by_static[identity.x25519_public] = peer
            self._touch(peer, now)
        peer.verified = True
        if rivals:
            # The networks that named the forged identity are worked out again: a checked
            # one holds the address now, so their claims are refused.
            self.set_networks(self._configs, now)
        return peer

    def _claimed_address(self, key: IdentityKey) -> str | None:
        """The address the configs give the identity with these keys."""
        for config in self._configs:
            for member in config.members:
                identity = member.identity
                if identity.x25519_public + identity.ed25519_public == key:
                    return identity.address
        return None

    def _holder(self, address: str) -> Holder | None:
        peer = self.peers.get(address)
        return Holder(peer.identity, peer.verified) if peer is not None else None

    def _holder_of_key(self, x25519_public: bytes) -> Holder | None:
        peer = self._peers_by_static.get(x25519_public)
        return Holder(peer.identity, peer.verified) if peer is not None else None

    def _checked(self, identity: Identity) -> bool | None:
        """Whether the identity's address was derived and matches (None: never derived)."""
        derived = self._intake.identities.known(identity.x25519_public + identity.ed25519_public)
        return None if derived is None else derived == identity.address

    def _forget(self, peer: Peer) -> None:
        self._end_sessions(peer)
        self._touched.discard(peer)
        self._handshakes.pop(peer.handshake_index, None)
        self.peers.pop(peer.address, None)
        self._peers_by_static.pop(peer.identity.x25519_public, None)
        self._reassembly.forget_peer(peer.address)

    def _end_sessions(self, peer: Peer) -> None:
        for session in (peer.current, peer.previous, peer.unconfirmed):
            if session is not None:
                self._sessions.pop(session.local_index, None)
        peer.current = peer.previous = peer.unconfirmed = None

    def say_goodbye(self, now: float) -> None:
        """Stopping: tell every connected peer, so that whoever routes through us (a full
        tunnel) stops at once instead of after the probe timeout."""
        for peer in self.peers.values():
            if peer.current is not None and peer.preferred is not None:
                self._send_message(peer, Goodbye(), now)

    def _peer_left(self, peer: Peer, now: float) -> None:
        """A peer said goodbye (authenticated): its sessions end and no path is trusted until
        it comes back with a new handshake."""
        self._lifecycle(peer, Event.GOODBYE, now)

    def _distrust(self, peer: Peer) -> None:
        """Its sessions are over: no path is trusted until it speaks again."""
        self._end_sessions(peer)
        for path in peer.paths.values():
            path.last_received = -math.inf
        if peer.preferred is not None:
            peer.preferred = None
            self._events.append(_path_changed(peer, None))

    # --- outputs -------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[int, Endpoint, list[bytes], int]]:
        """Runs of datagrams, in order: (socket id, endpoint, datagrams, uniform size)."""
        out, self._datagrams = self._datagrams, []
        return out

    def packets_for_tap(self) -> dict[str, list[tuple[bytes, int]]]:
        """Network id -> the (IP packet, partial-checksum hint) pairs to deliver, in order."""
        out, self._packets = self._packets, {}
        return out

    def datagrams_pending(self) -> bool:
        return bool(self._datagrams or self._packets or self._events)

    def peer_endpoints(self, address: str, now: float) -> list[str]:
        """Where a peer is reachable as we see it ("ip/port"), for its controller's config."""
        peer = self.peers.get(address)
        return self._endpoints_of(peer, now) if peer is not None else []

    def next_event(self) -> NodeEvent | None:
        return self._events.popleft() if self._events else None

    def next_timer(self) -> float:
        """When handle_timer next has something to do (inf: only an input can give it work)."""
        self._schedule_touched()
        timers = self._timers
        while timers:
            due, _, peer = timers[0]
            if due != peer.scheduled or self.peers.get(peer.address) is not peer:
                heapq.heappop(timers)  # superseded by an earlier entry, or forgotten
            elif peer.due > due:
                heapq.heappop(timers)  # its deadline moved later: so does its entry
                self._push_timer(peer)
            else:
                break
        first = timers[0][0] if timers else math.inf
        others = min(self._lookups.next_due(), self._intake.identities.next_due(),
                     self._reassembly.next_due())  # fmt: skip
        return min(first, others + DEADLINE_SLACK_S)

    # --- the physical side -------------------------------------------------------------------

    def socket_up(self, socket_id: int, family: int, now: float) -> None:
        """A new binder socket: probe every peer's endpoints over it at once."""
        self.sockets[socket_id] = family
        for peer in self.peers.values():
            self._add_candidate_paths(peer)
            self._probe(peer, now, only_socket=socket_id)

    def socket_down(self, socket_id: int, now: float) -> None:
        """The socket's interface is gone: its paths die now, traffic moves at once."""
        self.sockets.pop(socket_id, None)
        for peer in self.peers.values():
            gone = [k for k, p in peer.paths.items()
                    if isinstance(p, DirectPath) and p.socket_id == socket_id]  # fmt: skip
            for key in gone:
                del peer.paths[key]
            if peer.preferred is not None and peer.preferred.key in gone:
                peer.preferred = None
                self._reselect(peer, now)
                self._probe(peer, now)

    def socket_readdressed(self, socket_id: int, now: float) -> None:
        """Our address behind a socket changed: tell peers at once (they follow the roam)."""
        for peer in self.peers.values():
            self._probe(peer, now, only_socket=socket_id)

    def set_own_addresses(self, addresses: Iterable[str], now: float) -> None:
        """The addresses of this node's uplinks (as the binder sees them): paths to them go."""
        self.own_ips = frozenset(
            ipaddress.ip_address(a.split("%")[0]).compressed for a in addresses
        )
        for peer in self.peers.values():
            stale = [k for k, p in peer.paths.items()
                     if isinstance(p, DirectPath) and self._own(p.endpoint)]  # fmt: skip
            for key in stale:
                if peer.preferred is peer.paths[key]:
                    peer.preferred = None
                del peer.paths[key]
            if stale and peer.preferred is None:
                self._reselect(peer, now)

    def set_socket_ranks(self, ranks: dict[int, int], now: float) -> None:
        """Which uplinks the OS prefers (the default routes' metrics, or the user's): paths
        through a better one are taken as soon as it works, RTT decides between equals."""
        if ranks == self.socket_ranks:
            return
        self.socket_ranks = dict(ranks)
        for peer in self.peers.values():
            self._reselect(peer, now)

    def _own(self, endpoint: Endpoint) -> bool:
        try:
            ip = ipaddress.ip_address(endpoint[0])
        except ValueError:
            return False
        return ip.is_loopback or ip.compressed in self.own_ips

    def routes_changed(self, now: float) -> None:
        """Routes moved: a path may now fail one way only (our packets go to a dead gateway
        while the peer's still arrive), so only answered probes count as proof."""
        for peer in self.peers.values():
            if peer.current is not None:
                self._probe(peer, now, strict=True)

    def _connected_root(self) -> bool:
        return any(root.current is not None for root in self._roots.values())

    def _add_relay_paths(self, peer: Peer) -> None:
        """Every peer that is not a root can also be reached through each connected root."""
        if peer.root:
            return
        for root in self._roots.values():
            if root.current is not None and root.address not in peer.paths:
                peer.paths[root.address] = RelayPath(root.address, peer.address)

    def _add_candidate_paths(self, peer: Peer) -> None:
        known = peer.hints | {p.endpoint for p in peer.paths.values() if isinstance(p, DirectPath)}
        for endpoint in known:
            if self._inside_virtual_network(endpoint) or self._own(endpoint):
                self.refused_hints.add((peer.address, endpoint))
                continue
            family = socket.AF_INET6 if ":" in endpoint[0] else socket.AF_INET
            for socket_id, socket_family in self.sockets.items():
                if socket_family == family and (socket_id, endpoint) not in peer.paths:
                    peer.paths[(socket_id, endpoint)] = DirectPath(socket_id, endpoint)

    # --- receiving -----------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, socket_id: int, address: tuple, now: float) -> None:
        self.receive_datagrams([data], socket_id, address, now)

    def receive_datagrams(self, datagrams: list[bytes], socket_id: int, address: tuple,
                          now: float) -> None:  # fmt: skip
        """Datagrams from one sender on one socket. Data for the first one's session is
        opened and replay-checked in one call (node/aead.py); the rest, one by one."""
        session = self._data_session(datagrams[0], now)
        if session is None:
            for data in datagrams:
                self._receive(data, socket_id, address, None, now)
            return
        self._opened(session, session.opener.open_many(datagrams), socket_id, address, now)

    def receive_coalesced(self, data: bytes, size: int, socket_id: int, address: tuple,
                          now: float) -> None:  # fmt: skip
        """One read of a socket: datagrams of ``size`` bytes (the last maybe shorter) as UDP
        GRO joined them, or one datagram (size 0)."""
        session = self._data_session(data, now)
        if session is None:  # (the first datagram of the split is the one just looked at)
            for datagram in wire.split_coalesced(data, size):
                self._receive(datagram, socket_id, address, None, now)
            return
        self._opened(session, session.opener.open_coalesced(data, size), socket_id, address, now)

    def _data_session(self, first: bytes, now: float) -> Session | None:
        """The live session a data datagram is for, if any (else it takes the long way)."""
        if len(first) < wire.DATA_OVERHEAD or first[1] != wire.TYPE_DATA:
            return None
        session = self._sessions.get(_INDEX.unpack_from(first, 4)[0])
        if session is None or now - session.created_at > REJECT_AFTER_S:
            return None
        return session

    def _opened(self, session: Session, result: tuple, socket_id: int, address: tuple,
                now: float) -> None:  # fmt: skip
        """What an opener made of a batch (aead.py): counted, delivered, the rest handled."""
        opened, authenticated, others, replayed, forged = result
        if replayed:
            self.drops["replayed"] += replayed
        if forged:
            self.drops["authentication_failed"] += forged
        if authenticated:
            path = self._authenticated(session, socket_id, address, None, now)
            self.accepted += authenticated
            if opened:
                self._receive_data(session.peer, opened, path, now)
        for data in others:
            self._receive(data, socket_id, address, None, now)

    def _receive(self, data: bytes, socket_id: int | None, address: tuple | None, via: str | None,
                 now: float) -> None:  # fmt: skip
        """A datagram from (socket, address), or relayed by root ``via`` (then both None)."""
        length = len(data)
        if length < 4:
            self.drops["truncated"] += 1
            return
        if data[0] != wire.PROTOCOL_VERSION:
            self.drops["unsupported_version"] += 1
            return
        kind = data[1]
        if kind in _TRANSPORT_TYPES:
            self._receive_transport(data, kind, socket_id, address, via, now)
        elif kind == wire.TYPE_HANDSHAKE_INIT:
            self._receive_initiation(data, socket_id, address, via, now)
        elif kind == wire.TYPE_HANDSHAKE_RESPONSE:
            self._receive_response(data, socket_id, address, via, now)
        elif kind == wire.TYPE_COOKIE_REPLY:
            self._receive_cookie_reply(data, socket_id, address, now)
        else:
            self.drops["unknown_type"] += 1

    def _receive_transport(self, data: bytes, kind: int, socket_id: int | None,
                           address: tuple | None, via: str | None, now: float) -> None:  # fmt: skip
        if len(data) < wire.DATA_OVERHEAD:
            self.drops["truncated"] += 1
            return
        receiver, counter = _DATA_FIELDS.unpack_from(data, 4)
        session = self._sessions.get(receiver)
        if session is None:
            self.drops["unknown_session"] += 1
            return
        opener = session.opener
        if opener.seen_or_too_old(counter):
            self.drops["replayed"] += 1
            return
        if now - session.created_at > REJECT_AFTER_S:
            self.drops["expired_session"] += 1
            return
        payload = session.decrypt(data)
        if payload is None:
            self.drops["authentication_failed"] += 1
            return
        if not opener.mark(counter):
            self.drops["replayed"] += 1
            return
        peer = session.peer
        path = self._authenticated(session, socket_id, address, via, now)
        if kind == wire.TYPE_RELAYED:
            # Counted by what the datagram inside turns out to be, so that every datagram
            # received is still accepted or dropped exactly once.
            self._receive_relayed(peer, payload, now)
            return
        self.accepted += 1
        if kind == wire.TYPE_RELAY:
            self._forward(peer, payload, now)
        elif kind == wire.TYPE_DATA:
            if payload:  # (empty: a keepalive)
                self._receive_data(peer, [(payload, data[2] | data[3] << 8)], path, now)
        elif kind == wire.TYPE_CONTROL_CHUNK:
            whole = self._reassembly.add(peer.address, payload, now)
            if whole is not None:
                self._receive_control(peer, whole, path, now)
        else:
            self._receive_control(peer, payload, path, now)

    def _authenticated(self, session: Session, socket_id: int | None, address: tuple | None,
                       via: str | None, now: float) -> Path | None:  # fmt: skip
        """Bookkeeping once a session's datagrams authenticated: the path they came on."""
        session.last_received = now
        peer = session.peer
        if not session.confirmed:
            self._confirm(peer, session, now)
        return self._path_heard(peer, socket_id, address, via, now)

    def _receive_data(self, peer: Peer, packets: list[tuple[bytes, int]], path: Path | None,
                      now: float) -> None:  # fmt: skip
        """IP packets (with their hints) from one peer, from one path."""
        self._mark_traffic(peer, now)
        peer.last_data_received = now
        if path is not None and path is not peer.preferred:
            self._peer_prefers(peer, path)  # it sends data on its preferred path
            self._follow(peer, path, now)
        self._deliver(peer, packets)

    def _forward(self, source: Peer, payload: bytes, now: float) -> None:
        """As a root: pass a datagram on to the peer it is for (we cannot read it)."""
        if not self.relay:
            self.packet_drops["relay_refused"] += 1
            return
        destination = self.peers.get(payload[: wire.ADDRESS_LEN].hex())
        if destination is None or destination.current is None or destination is source:
            self.packet_drops["relay_no_destination"] += 1
            return
        source_address = bytes.fromhex(source.address)
        self._send(destination, wire.TYPE_RELAYED, source_address + payload[wire.ADDRESS_LEN :],
                   now)  # fmt: skip

    def _receive_relayed(self, root: Peer, payload: bytes, now: float) -> None:
        if not root.root or len(payload) < wire.ADDRESS_LEN:
            self.drops["relayed_not_from_root"] += 1
            return
        # The inner datagram came over our relay path through this root.
        self._receive(payload[wire.ADDRESS_LEN :], None, None, root.address, now)

    def _deliver(self, peer: Peer, packets: list[tuple[bytes, int]]) -> None:
        """Each packet to the network its source address belongs to, or dropped. Packets of
        one flow come in runs: the source's network is looked up once per run."""
        runs, malformed = wire.by_source(packets)
        if malformed:
            self.packet_drops["inner_malformed"] += malformed
        batches = self._packets
        for source, run in runs:
            network_id = self._source_network(peer, source)
            if network_id is None:
                self.packet_drops["source_not_allowed"] += len(run)
                continue
            batch = batches.get(network_id)
            if batch is None:
                batches[network_id] = run
            else:
                batch.extend(run)

    def _source_network(self, peer: Peer, source: bytes) -> str | None:
        """The network a packet from this peer with this source address is from, if any."""
        network_id = peer.source_networks.get(source)
        if network_id is not None:
            return network_id
        networks = self.networks
        for routed in peer.routed_networks:
            if networks[routed].source_owner(source) == peer.address:
                return routed
        return None

    def _receive_control(self, peer: Peer, payload: bytes, path: Path | None, now: float) -> None:
        try:
            message = decode(payload)
        except MessageError:
            self.packet_drops["control_malformed"] += 1
            return
        match message:
            case Ping() | Pong():
                self._receive_probe(peer, message, path, now)
            case Whois():
                self._answer_whois(peer, message, now)
            case WhoisAnswer():
                self._receive_whois_answer(peer, message, now)
            case Introduction():
                self._receive_introduction(peer, message, now)
            case Goodbye():
                self._peer_left(peer, now)
            case ChunkRequest():
                self._resend_chunks(peer, message, now)
            case AddressQuery():
                self._answer_address_query(peer, message, path, now)
            case ConfigRequest() | ConfigAnswer() | ConfigDelta() | AddressAnswer():
                self._events.append(ControlReceived(peer.address, message))

    def ask_address(self, address: str, query_id: int, now: float) -> bool:
        """Ask a peer where it sees us (the answer comes as a ControlReceived event); False
        if there is no such peer."""
        peer = self.peers.get(address)
        if peer is None:
            return False
        self._send_message(peer, AddressQuery(query_id), now)
        return True

    def _answer_address_query(self, peer: Peer, message: AddressQuery, path: Path | None,
                              now: float) -> None:  # fmt: skip
        if not peer.networks or path is None:
            self.packet_drops["address_query_refused"] += 1
            return
        seen = (f"{path.endpoint[0]}/{path.endpoint[1]}" if isinstance(path, DirectPath)
                else f"relayed by {path.via}")  # fmt: skip
        addresses = (ipaddress.ip_address(a) for a in self.own_ips)
        exits = tuple(str(a) for a in sorted((a for a in addresses if not a.is_link_local),
                                             key=lambda a: (a.version, a)))[:8]  # fmt: skip
        self._send_message(peer, AddressAnswer(message.query_id, seen, exits), now)

    def _receive_probe(self, peer: Peer, message: Ping | Pong, path: Path | None,
                       now: float) -> None:  # fmt: skip
        if path is None:
            return
        if isinstance(message, Ping):
            if message.preferred:
                self._peer_prefers(peer, path)
                if path is not peer.preferred:
                    self._follow(peer, path, now)  # the peer moved (new uplink or address)
            self._send_on(peer, path, wire.TYPE_CONTROL, encode(Pong(message.probe_id)), now)
        elif message.probe_id == path.probe_id and path.probe_sent > -math.inf:
            path.record_rtt(now - path.probe_sent)
            path.probe_sent = -math.inf
            path.strict = False
            self._touch(peer, now)  # no probe timeout to wait for any more
            self._reselect(peer, now)

    # --- identity look-ups and introductions (what roots are for) ------------------------------

    def lookup(self, address: str, now: float) -> None:
        """Find a node by address through the roots; it becomes a kept peer when found."""
        if address in self.peers or address == self.identity.address:
            return
        self._lookups.start(address, now)
        for root in self._roots.values():
            if root.current is not None:
                self._send_message(root, Whois(address), now)

    def _endpoints_of(self, peer: Peer, now: float) -> list[str]:
        """Where a peer is reachable directly ("ip/port"): node/roots.py says which."""
        return advertised_endpoints(peer.paths.values(), now, self._window(peer, now))

    def _answer_whois(self, asker: Peer, message: Whois, now: float) -> None:
        """Only a root (``relay``) answers, and only as node/roots.py allows."""
        address = message.address
        if not self.relay:
            self.packet_drops["whois_refused"] += 1
            return
        target = self.peers.get(address)
        if target is not None and not may_tell(asker.networks, target.networks, target.findable):
            self.packet_drops["whois_refused"] += 1
            target = None  # answered as if unknown: the answer says nothing either way
        if target is None:
            self._send_message(asker, WhoisAnswer(address), now)
            return
        answer = WhoisAnswer(address, target.identity.public_text(),
                             tuple(self._endpoints_of(target, now)))
        self._send_message(asker, answer, now)
        if target.current is not None:
            # Tell the target too, so both sides send at once (opens NAT mappings both ways).
            endpoints = tuple(self._endpoints_of(asker, now))
            intro = Introduction(asker.identity.public_text(), endpoints)
            self._send_message(target, intro, now)

    def _receive_whois_answer(self, root: Peer, message: WhoisAnswer, now: float) -> None:
        address = message.address
        if not root.root or address not in self._lookups or message.identity is None:
            return  # not asked, not from a root, or unknown there (another root may know)
        peer = self._peer_from_announcement(message.identity, message.endpoints, now)
        if peer is None or peer.address != address:
            self.packet_drops["whois_answer_invalid"] += 1
            return
        peer.keep = True
        self._connect(peer, now)

    def _receive_introduction(self, root: Peer, message: Introduction, now: float) -> None:
        if not root.root:
            self.packet_drops["introduction_not_from_root"] += 1
            return
        peer = self._peer_from_announcement(message.identity, message.endpoints, now)
        if peer is None:
            self.packet_drops["introduction_invalid"] += 1
            return
        self._connect(peer, now)

    def _peer_from_announcement(self, identity_text: str, endpoints_text: tuple[str, ...],
                                now: float) -> Peer | None:  # fmt: skip
        """An identity with endpoints from a root, if believable (node/roots.py)."""
        announced = read_announcement(identity_text, endpoints_text, self.identity.address,
                                      self._identity_of)  # fmt: skip
        if announced is None:
            return None
        peer = self._add_peer(announced.identity, now)
        if peer is None:
            return None
        peer.hints.update(announced.endpoints)
        self._add_candidate_paths(peer)
        return peer

    def _identity_of(self, address: str) -> Identity | None:
        """The checked identity we hold for an address: what an announcement must not
        contradict. (One merely vouched for gives way to the announced one, which is checked.)"""
        peer = self.peers.get(address)
        return peer.identity if peer is not None and peer.verified else None

    def _connect(self, peer: Peer, now: float) -> None:
        if peer.current is None:
            self._lifecycle(peer, Event.NEED, now)
        for message in self._lookups.found(peer.address):
            self._send_message(peer, message, now)

    def _send_message(self, peer: Peer, message: Message, now: float) -> None:
        """One control message: in one datagram, or in chunks if it is larger (chunks.py)."""
        payload = encode(message)
        if len(payload) <= chunks.CHUNK_LEN:
            self._send(peer, wire.TYPE_CONTROL, payload, now)
            return
        message_id = self._next_message_id
        self._next_message_id = (message_id + 1) & 0xFFFFFFFF
        try:
            parts = chunks.split(payload, message_id)
        except ValueError:
            self.packet_drops["control_too_large"] += 1
            return
        self._sent_chunks.keep(peer.address, message_id, parts, now)
        for part in parts:
            self._send(peer, wire.TYPE_CONTROL_CHUNK, part, now)

    def _resend_chunks(self, peer: Peer, message: ChunkRequest, now: float) -> None:
        for part in self._sent_chunks.again(peer.address, message.message_id,
                                            list(message.indexes), now):  # fmt: skip
            self.chunks_resent += 1
            self._send(peer, wire.TYPE_CONTROL_CHUNK, part, now)

    def _ask_for_missing_chunks(self, now: float) -> None:
        for address, message_id, missing in self._reassembly.due_requests(now):
            peer = self.peers.get(address)
            if peer is not None:
                self._send_message(peer, ChunkRequest(message_id, tuple(missing)), now)

    def reach(self, identity: Identity, endpoints: Iterable[Endpoint], now: float) -> None:
        """A node we are about to send to and may not know: a member of a network we control
        that talked to another controller process sharing our store, which holds its identity
        (from that process's checked handshake) and where it was seen. Known already: only
        the endpoints are added. Another identity holding its address or key: nothing."""
        if identity.address == self.identity.address:
            return
        peer = self.peers.get(identity.address)
        if peer is None:
            if identity.x25519_public in self._peers_by_static:
                return
            peer = self.peers[identity.address] = Peer(identity)
            self._peers_by_static[identity.x25519_public] = peer
        elif peer.identity != identity:
            return
        peer.hints.update(endpoints)
        self._add_candidate_paths(peer)
        self._touch(peer, now)

    def send_control(self, address: str, message: Message, now: float) -> None:
        """Send a control message to any node, looking it up through the roots if needed."""
        peer = self.peers.get(address)
        if peer is not None:
            peer.keep = True
            self._send_message(peer, message, now)
            return
        self._lookups.hold(address, message)
        self.lookup(address, now)

    def _receive_initiation(self, data: bytes, socket_id: int | None, address: tuple | None,
                            via: str | None, now: float) -> None:  # fmt: skip
        """Only cheap checks here (node/handshakes.py): what passes waits for
        process_handshakes, after the transport datagrams of this wake-up."""
        reply = self._intake.offer(data, Arrival(socket_id, address, via), now,
                                   can_reply=socket_id in self.sockets)  # fmt: skip
        if reply is not None and socket_id is not None and address is not None:
            self._datagrams.append((socket_id, _endpoint(address), [reply], 0))

    @property
    def cookie_replies_sent(self) -> int:
        return self._intake.cookie_replies_sent

    def process_handshakes(self, now: float) -> None:
        """Handle the initiations that passed the cheap checks (one DH computation each)."""
        for read in self._intake.read():
            self._admit(read, now)

    def initiations_waiting(self) -> int:
        """Initiations queued or waiting for an identity check: a flood's backlog."""
        return self._intake.waiting()

    def _admit(self, read: ReadInitiation, now: float) -> None:
        """An initiation that verified: answered if its initiator is a peer, or once its
        address is checked if it is not."""
        peer = self._peers_by_static.get(read.remote_static)
        if peer is None:
            key = read.remote_static + read.ed25519_public
            identities = self._intake.identities
            known = identities.known(key)
            if known is None:
                # Its address takes a scrypt run: off the event loop (identity_requests).
                identities.wait(key, read.arrival.source, read, now)
                return
            peer = self._accept_unknown(key, known, now)
            if peer is None:
                return
        elif peer.identity.ed25519_public != read.ed25519_public:
            self.drops["identity_mismatch"] += 1
            return
        self._answer_initiation(peer, read, now)

    def identity_requests(self) -> list[IdentityKey]:
        """Identities (X25519 + Ed25519 public key) whose address the service should derive,
        off the event loop (``identity.derive_address``), and report with identity_derived."""
        return self._intake.identities.take_requests()

    def identity_derived(self, key: IdentityKey, address: str | None, now: float) -> None:
        """The address of an identity asked for (None: the check failed)."""
        for read in self._intake.identities.derived(key, address, now):
            peer = self._peers_by_static.get(key[:32])
            if peer is None:
                peer = self._accept_unknown(key, address, now)
            if peer is not None:
                self._answer_initiation(peer, read, now)
        if key in self._disputed:
            # A vouched identity in dispute is settled: the networks are worked out again.
            self._disputed.discard(key)
            held = self._peers_by_static.get(key[:32])
            if held is not None and held.identity.ed25519_public == key[32:]:
                held.verified = address == held.address
            if address is not None and address != self._claimed_address(key):
                self.forged_identities += 1
            self.set_networks(self._configs, now)

    def _answer_initiation(self, peer: Peer, read: ReadInitiation, now: float) -> None:
        if read.timestamp <= peer.last_initiation_timestamp:
            self.drops["handshake_replayed"] += 1
            return
        if not peer.networks and not peer.root:
            # Reached us while in none of our networks: uses us as its root, and may be
            # found through us.
            peer.findable = True
        arrival = read.arrival
        if arrival.address is not None and self._inside_virtual_network(_endpoint(arrival.address)):
            self.drops["endpoint_in_virtual_network"] += 1
            return
        self.accepted += 1
        peer.last_initiation_timestamp = read.timestamp
        local_index = self._new_index()
        responder = read.responder
        response = responder.write_message_2(b"")
        send_key, receive_key = responder.split()
        session = Session(peer, local_index, read.sender_index, send_key, receive_key, False, now)
        if peer.unconfirmed is not None:
            self._sessions.pop(peer.unconfirmed.local_index, None)
        peer.unconfirmed = session
        self._sessions[local_index] = session
        self._touch(peer, now)
        path = self._path_heard(peer, arrival.socket_id, arrival.address, arrival.via, now)
        if path is not None:
            self._emit(path, wire.handshake_response(local_index, read.sender_index, response),
                       now)  # fmt: skip

    def _accept_unknown(self, key: IdentityKey, address: str, now: float) -> Peer | None:
        """A node we never heard of, with a valid handshake and a checked address: kept as a
        transient peer, within bounds."""
        transient = [p for p in self.peers.values() if not p.keep]
        if len(transient) >= MAX_TRANSIENT_PEERS and not self._evict_idle_transient(transient, now):
            self.drops["too_many_peers"] += 1
            return None
        peer = None if address == self.identity.address else (
            self._add_peer(Identity(address, key[:32], key[32:]), now))  # fmt: skip
        if peer is None:
            # Same address, other keys, and the known one was checked too: a collision or a
            # forgery. The known one stays. (One only vouched for was forged: it went.)
            self.drops["identity_mismatch"] += 1
        return peer

    def _evict_idle_transient(self, transient: list[Peer], now: float) -> bool:
        """Make room by forgetting the transient peer idle the longest, if it has been idle a
        while: newcomers are not locked out by yesterday's visitors (or a flood's)."""
        oldest = min(transient, key=lambda p: max(p.last_heard, p.handshake_sent))
        if now - max(oldest.last_heard, oldest.handshake_sent) < TRANSIENT_EVICT_IDLE_S:
            return False
        self._forget(oldest)
        self.evicted_transient_peers += 1
        return True

    def _receive_response(self, data: bytes, socket_id: int | None, address: tuple | None,
                          via: str | None, now: float) -> None:  # fmt: skip
        if len(data) != wire.HANDSHAKE_RESPONSE_LEN:
            self.drops["handshake_malformed"] += 1
            return
        if address is not None and self._inside_virtual_network(_endpoint(address)):
            self.drops["endpoint_in_virtual_network"] += 1
            return
        sender_index, receiver_index = _RESPONSE_INDEXES.unpack_from(data, 4)
        peer = self._handshakes.get(receiver_index)
        if peer is None or peer.handshake is None:
            self.drops["unknown_session"] += 1
            return
        try:
            peer.handshake.initiator.read_message_2(data[12:])
        except HandshakeError:
            self.drops["handshake_failed"] += 1
            return
        self.accepted += 1
        before = self._state(peer, now)
        send_key, receive_key = peer.handshake.initiator.split()
        del self._handshakes[receiver_index]
        peer.handshake = None
        session = Session(peer, receiver_index, sender_index, send_key, receive_key, True, now)
        self._sessions[receiver_index] = session
        self._promote(peer, session, now)
        self._path_heard(peer, socket_id, address, via, now)
        self._events.append(PeerConnected(peer.address))
        self._lifecycle(peer, Event.RESPONSE, now, before)

    def _confirm(self, peer: Peer, session: Session, now: float) -> None:
        before = self._state(peer, now)
        session.confirmed = True
        if peer.unconfirmed is session:
            peer.unconfirmed = None
        self._promote(peer, session, now)
        self._events.append(PeerConnected(peer.address))
        self._lifecycle(peer, Event.CONFIRMED, now, before)

    def _promote(self, peer: Peer, session: Session, now: float) -> None:
        if peer.previous is not None:
            self._sessions.pop(peer.previous.local_index, None)
        replaced = peer.current is not None
        peer.previous, peer.current = peer.current, session
        self._touch(peer, now)
        if replaced:
            # The paths are proven again with the new session. A path whose other end does not
            # hold it stops answering and is left: e.g. two controller processes sharing one
            # identity and database, one gone, the other now reaching us.
            self._probe(peer, now)
        if peer.root:
            # Every other peer can now also be reached through this root.
            for other in self.peers.values():
                if not other.root:
                    self._add_relay_paths(other)
                    self._touch(other, now)

    def _path_heard(self, peer: Peer, socket_id: int | None, address: tuple | None,
                    via: str | None, now: float) -> Path | None:  # fmt: skip
        """An authenticated packet came over (socket, address), or through root ``via``: that
        path works."""
        if via is not None:
            path = peer.paths.get(via)
            if path is None:
                path = peer.paths[via] = RelayPath(via, peer.address)
        else:
            endpoint = _endpoint(address)
            path = peer.paths.get((socket_id, endpoint))
            if path is None:
                if socket_id not in self.sockets or self._inside_virtual_network(endpoint):
                    # The datagram itself was fine (and counted as accepted); only the path is
                    # not kept.
                    self.packet_drops["path_refused"] += 1
                    return None
                path = DirectPath(socket_id, endpoint, learned=endpoint not in peer.hints)
                peer.paths[path.key] = path
        path.last_received = now
        peer.last_heard = now
        if path is peer.preferred and not path.strict:
            return path  # just heard from, so alive: the common case, once per packet
        self._touch(peer, now)
        if peer.preferred is None or not peer.preferred.alive(now, self._window(peer, now)):
            self._reselect(peer, now)
        return path

    def _inside_virtual_network(self, endpoint: Endpoint) -> bool:
        """No path may run through one of our own networks: it would tunnel the tunnel. (A
        relay path has no endpoint: the root's own path was checked.)"""
        try:
            ip = ipaddress.ip_address(endpoint[0])
        except ValueError:
            return True
        return any(ip.version == s.version and ip in s for s in self._virtual_subnets)

    # --- sending ---------------------------------------------------------------------------------

    def send_packet(self, network_id: str, packet: bytes, now: float, hint: int = 0) -> None:
        """An IP packet from a network's tap; ``hint`` says where a partial checksum is."""
        self.send_packets(network_id, [(packet, hint)], now)

    def send_packets(self, network_id: str, packets: list[tuple[bytes, int]], now: float) -> None:
        """IP packets from a network's tap, each with its partial-checksum hint. The segments
        of one super-packet share a destination: it is looked up once."""
        network = self.networks.get(network_id)
        if network is None:
            self.packet_drops["unknown_network"] += len(packets)
            return
        runs, malformed, oversize = wire.by_destination(packets, network.config.mtu)
        if malformed:
            self.packet_drops["outbound_malformed"] += malformed
        if oversize:
            self.packet_drops["oversize"] += oversize
        for destination, run in runs:
            peer_address = network.by_destination.get(destination) or network.gateway_for(
                destination
            )
            if peer_address is None:
                self.packet_drops["no_route"] += len(run)
                continue
            peer = self.peers[peer_address]
            self._mark_traffic(peer, now)
            self._send_data(peer, run, now, network_id)

    def send_super_packet(self, network_id: str, packet: SuperPacket, now: float) -> None:
        """A TCP super-packet from a network's tap (offload.py): its segments share one
        destination and fit the MTU if the first does, so it is routed once and sealed in
        one call. Anything unusual takes the way of its cut segments."""
        network = self.networks.get(network_id)
        if network is None:
            self.packet_drops["unknown_network"] += packet.count
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
            self.packet_drops["no_route"] += packet.count
            return
        peer = self.peers[peer_address]
        self._mark_traffic(peer, now)
        direct = self._direct(peer, now)
        datagrams = direct and direct[0].seal_super(packet)
        if not datagrams:
            self._send_data(peer, packet.segments(), now, network_id)
            return
        # Each but a shorter last one: the data header, the segment's headers, size, the tag.
        self._sent(peer, direct, datagrams, wire.DATA_OVERHEAD + packet.header_len + packet.size,
                   now)  # fmt: skip

    def _send_data(self, peer: Peer, packets: list[tuple[bytes, int]], now: float,
                   network_id: str) -> None:  # fmt: skip
        """IP packets to one peer: sealed in one call when a session and a direct path are
        there; otherwise one by one (queued, relayed, or starting a handshake)."""
        direct = self._direct(peer, now)
        datagrams = direct and direct[0].seal_many(wire.TYPE_DATA, packets)
        if not datagrams:
            if isinstance(peer.preferred, RelayPath):
                packets = self._fit_relay(network_id, packets)
            for packet, hint in packets:
                self._send(peer, wire.TYPE_DATA, packet, now, hint)
            return
        self._sent(peer, direct, datagrams, 0, now)

    def _fit_relay(self, network_id: str, packets: list[tuple[bytes, int]],
                   ) -> list[tuple[bytes, int]]:  # fmt: skip
        """Packets about to go relayed, made to fit a relay frame (node/toobig.py): cut into
        IPv4 fragments where allowed; otherwise dropped, the first answered into the tap with
        "too big" so that its sender sends smaller at once."""
        if all(len(packet) <= RELAYED_PACKET_MAX for packet, _ in packets):
            return packets  # the common case: one look per packet
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
            self.packet_drops["too_big_relayed"] += 1
            answer = None if answered else too_big_answer(packet, RELAYED_PACKET_MAX)
            if answer is not None:
                self._packets.setdefault(network_id, []).append((answer, 0))
                answered = True
        return fitting

    def _direct(self, peer: Peer, now: float) -> tuple[Session, DirectPath] | None:
        """The peer's session and path if data can go to it at once, sealed in batches."""
        session, path = peer.current, peer.preferred
        if (
            session is None or not isinstance(path, DirectPath)
            or now - session.created_at > REJECT_AFTER_S
        ):  # fmt: skip
            return None
        return session, path

    def _sent(self, peer: Peer, direct: tuple[Session, DirectPath], datagrams: list[bytes],
              size: int, now: float) -> None:  # fmt: skip
        session, path = direct
        session.last_sent = path.last_sent = now
        self._datagrams.append((path.socket_id, path.endpoint, datagrams, size))
        if now - session.created_at > REKEY_AFTER_S and peer.handshake is None:
            self._lifecycle(peer, Event.REKEY_DUE, now)

    def _send(self, peer: Peer, kind: int, payload: bytes, now: float, hint: int = 0) -> None:
        session = peer.current
        path = peer.preferred
        if session is None or now - session.created_at > REJECT_AFTER_S or path is None:
            if len(peer.queue) >= MAX_QUEUED_PACKETS:
                self.packet_drops["queue_full"] += 1
            else:
                peer.queue.append((kind, payload, hint))
            if session is None or now - session.created_at > REJECT_AFTER_S:
                self._lifecycle(peer, Event.NEED, now)
            elif now - peer.no_path_probed >= NO_PATH_PROBE_INTERVAL_S:
                # Not once per packet: held traffic (fail-closed) would make every packet a
                # probe on every path, towards a gateway that is gone.
                peer.no_path_probed = now
                self._probe(peer, now)
            return
        self._send_on(peer, path, kind, payload, now, hint)
        if now - session.created_at > REKEY_AFTER_S and peer.handshake is None:
            self._lifecycle(peer, Event.REKEY_DUE, now)  # (rekeying already: nothing to do)

    def _send_on(
        self, peer: Peer, path: Path, kind: int, payload: bytes, now: float, hint: int = 0
    ) -> None:
        session = peer.current
        if session is None:
            return
        datagram = session.seal(kind, payload, hint)
        if datagram is None:  # its counter is used up
            self._lifecycle(peer, Event.NEED, now)
            return
        session.last_sent = now
        self._emit(path, datagram, now)

    def _emit(self, path: Path, datagram: bytes, now: float) -> None:
        path.last_sent = now
        if isinstance(path, DirectPath):
            self._datagrams.append((path.socket_id, path.endpoint, [datagram], 0))
            return
        assert isinstance(path, RelayPath)
        if len(datagram) > RELAYED_PACKET_MAX + wire.DATA_OVERHEAD:
            # Its relay frame would not fit the path (a packet queued before the peer went
            # relayed): never left to IP fragmentation (node/toobig.py).
            self.packet_drops["too_big_relayed"] += 1
            return
        root = self.peers.get(path.via)
        if root is None or root.current is None or root.preferred is None:
            self.packet_drops["relay_unavailable"] += 1
            return
        destination = bytes.fromhex(path.to)
        self._send_on(root, root.preferred, wire.TYPE_RELAY, destination + datagram, now)

    def _flush_queue(self, peer: Peer, now: float) -> None:
        if peer.current is None or peer.preferred is None:
            return
        while peer.queue:
            kind, payload, hint = peer.queue.popleft()
            self._send_on(peer, peer.preferred, kind, payload, now, hint)

    # --- the peer lifecycle (node/lifecycle.py) -------------------------------------------------

    def _state(self, peer: Peer, now: float) -> State:
        if peer.current is not None:
            return State.REKEYING if peer.handshake is not None else State.CONNECTED
        if peer.handshake is None:
            return State.IDLE
        slow = now - peer.handshake_started > HANDSHAKE_GIVE_UP_S
        return State.UNREACHABLE if slow else State.HANDSHAKING

    def _lifecycle(self, peer: Peer, event: Event, now: float, state: State | None = None) -> None:
        """Do what the table says for this event in the peer's state (``state``: as it was
        before the caller changed its sessions)."""
        _, sends = transition(state or self._state(peer, now), event)
        for send in sends:
            if send is Send.INITIATION:
                self._initiate(peer, now)
            elif send is Send.DROP_QUEUE:
                self.packet_drops["queue_dropped_unreachable"] += len(peer.queue)
                peer.queue.clear()
            elif send is Send.QUEUE:
                self._flush_queue(peer, now)
            elif send is Send.QUEUE_OR_CONFIRM:
                if peer.queue:
                    self._flush_queue(peer, now)
                else:
                    self._send(peer, wire.TYPE_DATA, b"", now)
            elif send is Send.END_CURRENT:
                if peer.current is not None:
                    self._sessions.pop(peer.current.local_index, None)
                    peer.current = None
                    self._without_session_from(peer, now)
            elif send is Send.END_SESSIONS:
                self._distrust(peer)
                self._without_session_from(peer, now)
        self._touch(peer, now)

    @staticmethod
    def _without_session_from(peer: Peer, now: float) -> None:
        """A handshake in flight while the session was there (a rekey, or a new handshake
        for want of a working path) counts towards "unreachable" from when the session ended:
        unreachable means 30 s of unanswered handshakes without a session."""
        if peer.handshake is not None:
            peer.handshake_started = now

    def _abandon_handshake(self, peer: Peer) -> None:
        """Our initiation in flight is no longer needed: not retried; a late answer is an
        unknown index."""
        self._handshakes.pop(peer.handshake_index, None)
        peer.handshake = None

    def _initiate(self, peer: Peer, now: float) -> None:
        if peer.handshake is not None and now - peer.handshake_sent < HANDSHAKE_RETRY_S:
            return
        if not peer.paths:
            return
        if peer.handshake is None:
            peer.handshake_started = now
        self._handshakes.pop(peer.handshake_index, None)
        peer.handshake_index = self._new_index()
        peer.handshake = initiation(self._static, peer.identity.x25519_public,
                                    peer.handshake_index,
                                    wire.encode_timestamp(self._wall_offset + now),
                                    self.identity.ed25519_public)  # fmt: skip
        peer.handshake_sent = now
        self._touch(peer, now)
        self._handshakes[peer.handshake_index] = peer
        peer.cookie_answered.clear()
        # On the working path if there is one (a rekey); on every path otherwise: the answer
        # tells which paths work.
        if peer.preferred is not None and peer.preferred.alive(now, self._window(peer, now)):
            self._emit_initiation(peer, peer.preferred, now)
        else:
            for path in peer.paths.values():
                self._emit_initiation(peer, path, now)

    def _emit_initiation(self, peer: Peer, path: Path, now: float) -> None:
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
        self._emit(path, datagram, now)

    def _receive_cookie_reply(self, data: bytes, socket_id: int | None, address: tuple | None,
                              now: float) -> None:  # fmt: skip
        """The peer is under load and wants proof of our address: keep its cookie and send
        the same initiation again over that path, with a mac2 (once per initiation and path).
        Never relayed: a relayed initiation needs no proof (its root's session is one)."""
        if address is None:
            self.drops["cookie_reply_malformed"] += 1
            return
        if len(data) != wire.COOKIE_REPLY_LEN:
            self.drops["cookie_reply_malformed"] += 1
            return
        (receiver_index,) = _INDEX.unpack_from(data, 4)
        peer = self._handshakes.get(receiver_index)
        endpoint = _endpoint(address)
        path = None if peer is None else peer.paths.get((socket_id, endpoint))
        if peer is None or peer.handshake is None or path is None:
            self.drops["unknown_session"] += 1
            return
        nonce_end = 8 + cookies.NONCE_LEN
        cookie = cookies.open_cookie(
            cookies.cookie_key(peer.identity.x25519_public),
            peer.handshake.mac1, data[8:nonce_end], data[nonce_end:],
        )  # fmt: skip
        if cookie is None:
            self.drops["cookie_reply_invalid"] += 1
            return
        self.accepted += 1
        if len(peer.cookies) >= 2 * len(peer.paths) + 2:
            peer.cookies.clear()
        peer.cookies[endpoint] = (cookie, now)
        if endpoint not in peer.cookie_answered:
            peer.cookie_answered.add(endpoint)
            self._emit_initiation(peer, path, now)

    def _probe(
        self, peer: Peer, now: float, only_socket: int | None = None, strict: bool = False
    ) -> None:
        if peer.current is None:
            self._lifecycle(peer, Event.NEED, now)
            return
        for path in peer.paths.values():
            if only_socket is not None and not (
                isinstance(path, DirectPath) and path.socket_id == only_socket
            ):
                continue
            self._probe_path(peer, path, now, strict)

    def _probe_path(self, peer: Peer, path: Path, now: float, strict: bool = False) -> None:
        path.strict = path.strict or strict
        self._touch(peer, now)
        peer.probe_counter = (peer.probe_counter + 1) & 0x7FFFFFFF
        path.probe_leaving(peer.probe_counter, now)
        # "p": sent on our preferred path. The peer then answers on it too, so both
        # directions move together when we change uplink or address.
        ping = encode(Ping(path.probe_id, preferred=path is peer.preferred))
        self._send_on(peer, path, wire.TYPE_CONTROL, ping, now)

    @staticmethod
    def _peer_prefers(peer: Peer, path: Path) -> None:
        for other in peer.paths.values():
            other.peer_prefers = other is path

    def _follow(self, peer: Peer, path: Path, now: float) -> None:
        """Use the path the peer uses: it knows first when its side of a path changed. The
        path we leave may be dead: probe the others now so none is switched back to blindly."""
        if path.strict and not path.alive(now, self._window(peer, now)):
            return  # its packets reach us, but ours were shown not to leave over it
        window = self._window(peer, now)
        if choose_path(peer.paths.values(), peer.preferred, now, window,
                       self.socket_ranks) is not path:  # fmt: skip
            return  # ours is better placed (the uplink this OS prefers): the peer follows us
        peer.preferred = path
        self._touch(peer, now)
        self._events.append(_path_changed(peer, path))
        self._probe(peer, now)

    def _window(self, peer: Peer, now: float) -> float:
        """How long a silent path counts as alive: short while probing every second."""
        return PATH_ALIVE_S if _active(peer, now) else IDLE_PATH_ALIVE_S

    def _mark_traffic(self, peer: Peer, now: float) -> None:
        waking = now - peer.last_traffic >= ACTIVE_WINDOW_S
        if now - peer.last_traffic >= QUIET_PROBE_S:
            # Sending again after a pause: a quiet path may be due a probe sooner. (Not per
            # packet: a steady flow moves no deadline earlier.)
            self._touch(peer, now)
        peer.last_traffic = now
        if waking and peer.current is not None:
            # Paths were checked every 20 s while idle; traffic wants them proven now.
            peer.next_probe = now + _probe_interval(peer, now)
            self._probe(peer, now)

    def _reselect(self, peer: Peer, now: float) -> None:
        chosen = choose_path(peer.paths.values(), peer.preferred, now, self._window(peer, now),
                             self.socket_ranks)  # fmt: skip
        if chosen is not peer.preferred:
            peer.preferred = chosen
            self._touch(peer, now)
            self._events.append(_path_changed(peer, chosen))
            if chosen is not None and peer.current is not None:
                # Said at once on the new path, so the peer's traffic to us moves over too
                # instead of at its next probe.
                self._probe_path(peer, chosen, now)
                if peer.queue:
                    self._flush_queue(peer, now)
            elif chosen is None:
                peer.no_path_since = now  # _tick_peer: a new handshake if it stays so

    # --- time ----------------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Do what is due by ``now``, and nothing else: the peers whose deadline has come
        (each a few lines of work), then look-ups, identity checks and chunk requests."""
        self._clock = max(self._clock, now)
        self._schedule_touched()
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, _, peer = heapq.heappop(timers)
            if due != peer.scheduled or self.peers.get(peer.address) is not peer:
                continue
            peer.scheduled = math.inf
            if peer.due > now:
                self._push_timer(peer)
                continue
            self._tick_peer(peer, now)
            if self.peers.get(peer.address) is peer:
                self._touched.discard(peer)
                due = self._deadline(peer, now)
                # Its turn did what was due: a deadline still here would spin.
                self._set_due(peer, due if due > now else now + OVERDUE_RETRY_S)
        for address in self._lookups.due(now):
            self.lookup(address, now)
        self._intake.identities.expire(now)
        self._ask_for_missing_chunks(now)

    def _touch(self, peer: Peer, now: float) -> None:
        """Something about this peer changed: its deadline is worked out again before the
        timer is next read."""
        self._touched.add(peer)
        if now > self._clock:
            self._clock = now

    def _schedule_touched(self) -> None:
        touched, self._touched = self._touched, set()
        for peer in touched:
            if self.peers.get(peer.address) is peer:
                self._set_due(peer, self._deadline(peer, self._clock))

    def _set_due(self, peer: Peer, due: float) -> None:
        peer.due = due
        if due < peer.scheduled:
            self._push_timer(peer)

    def _push_timer(self, peer: Peer) -> None:
        peer.scheduled = peer.due
        if peer.due < math.inf:
            heapq.heappush(self._timers, (peer.due, next(self._timer_order), peer))

    def _deadline(self, peer: Peer, now: float) -> float:
        """When _tick_peer next has work for this peer, by the same rules it applies."""
        current = peer.current
        forget = math.inf
        if not peer.keep:
            forget = max(peer.last_heard, peer.handshake_sent) + TRANSIENT_IDLE_S
            if current is None and peer.handshake is None:
                return forget + DEADLINE_SLACK_S
        times = [forget]
        # Relay paths are added in its turn (direct ones are tried first).
        reachable = peer.paths or (not peer.root and self._connected_root())
        if peer.handshake is not None and not _wanted(peer, now):
            times.append(peer.handshake_sent + HANDSHAKE_RETRY_S)  # when it is given up
        elif (peer.handshake is not None or current is None) and reachable and _wanted(peer, now):
            waited = peer.handshake_sent + HANDSHAKE_RETRY_S - peer.handshake_started
            slow = peer.handshake is not None and waited > HANDSHAKE_GIVE_UP_S
            times.append(peer.handshake_sent + (UNREACHABLE_RETRY_S if slow else HANDSHAKE_RETRY_S))
        times += [p.last_received + LEARNED_PATH_EXPIRY_S for p in peer.paths.values() if p.learned]
        if current is not None:
            times.append(current.created_at + REJECT_AFTER_S)
            times.append(peer.next_probe)
            preferred = peer.preferred
            if preferred is None and peer.handshake is None and _needed(peer, now):
                times.append(peer.no_path_since + NO_PATH_HANDSHAKE_S)
            if preferred is not None:
                times.append(preferred.dies_at(self._window(peer, now)))
                silence = self._silence_deadline(peer, now)
                if silence > now:
                    times.append(silence)
        return max(min(times) + DEADLINE_SLACK_S, now)

    def _tick_peer(self, peer: Peer, now: float) -> None:
        if not peer.keep:
            if now - max(peer.last_heard, peer.handshake_sent) > TRANSIENT_IDLE_S:
                self._forget(peer)
                return
            if peer.current is None and peer.handshake is None:
                return  # it reached us once; it can reach us again
        self._add_relay_paths(peer)
        if (peer.handshake is not None or peer.current is None) and not _wanted(peer, now):
            if peer.handshake is not None and now - peer.handshake_sent >= HANDSHAKE_RETRY_S:
                self._abandon_handshake(peer)  # nothing needs it any more: no retries
        elif peer.handshake is not None or peer.current is None:
            # Keep trying to reach every member wanted: quickly at first, then every few
            # seconds, dropping what waited for it (counted) once it is clearly unreachable.
            waited = now - peer.handshake_started if peer.handshake is not None else 0.0
            interval = HANDSHAKE_RETRY_S if waited <= HANDSHAKE_GIVE_UP_S else UNREACHABLE_RETRY_S
            if now - peer.handshake_sent >= interval:
                self._lifecycle(peer, Event.RETRY_DUE, now)
        session = peer.current
        if session is not None and now - session.created_at > REJECT_AFTER_S:
            self._lifecycle(peer, Event.EXPIRED, now)
        for key, path in list(peer.paths.items()):
            if path.learned and now - path.last_received > LEARNED_PATH_EXPIRY_S:
                del peer.paths[key]
                if peer.preferred is path:
                    peer.preferred = None
        if (
            peer.preferred is None
            or not peer.preferred.alive(now, self._window(peer, now))
            or peer.current is None
        ):
            self._reselect(peer, now)
        if (peer.current is not None and peer.preferred is None and peer.handshake is None
                and now - peer.no_path_since >= NO_PATH_HANDSHAKE_S
                and _needed(peer, now)):  # fmt: skip
            # No path has worked with the session we send on for a while (probes had their
            # chance: a roam is over by now). The far end may have lost it (a restart; or a
            # second process with the same identity, a controller sharing its database, is
            # the one left): a new handshake on every path finds out, retried while none
            # answers.
            self._lifecycle(peer, Event.NEED, now)
        if peer.current is not None and now >= peer.next_probe:
            interval = _probe_interval(peer, now)
            heard = self._idle_and_heard(peer, now, interval)
            if heard is not None:
                peer.next_probe = heard + interval + IDLE_PROBE_YIELD_S
            else:
                peer.next_probe = now + interval
                self._probe(peer, now)
        elif peer.current is not None and self._gone_quiet(peer, now):
            # The peer was talking and has stopped while we still send: ask now rather than at
            # the next scheduled probe (a silent failure costs ~0.8 s instead of ~1.5 s).
            # One-way flows (nothing comes back anyway) keep the one-per-second probes.
            self._probe(peer, now)

    @staticmethod
    def _idle_and_heard(peer: Peer, now: float, interval: float) -> float | None:
        """When we last heard over an idle peer's preferred path, if that was recent enough
        to skip our own probe of it (the peer keeps probing: it is the one that hears less)."""
        path = peer.preferred
        if interval != IDLE_PROBE_INTERVAL_S or path is None or path.strict:
            return None
        return path.last_received if now - path.last_received < interval / 2 else None

    def _silence_deadline(self, peer: Peer, now: float) -> float:
        """A peer carrying traffic is looked at again exactly when its path may have gone
        quiet or its probe timed out: a dead gateway is withdrawn in well under a second."""
        path = peer.preferred
        if path is None or peer.current is None or not _active(peer, now):
            return math.inf
        if path.probe_outstanding():
            return path.unanswered_since + path.probe_timeout()
        return max(path.last_received, path.probe_sent) + QUIET_PROBE_S

    def _gone_quiet(self, peer: Peer, now: float) -> bool:
        """Traffic both ways until just now, and then the path fell silent."""
        path = peer.preferred
        return (
            path is not None
            and now - peer.last_traffic < QUIET_PROBE_S
            and now - peer.last_data_received < ACTIVE_WINDOW_S
            and now - path.last_received > QUIET_PROBE_S
            and now - path.probe_sent > QUIET_PROBE_S
            and not path.probe_outstanding()
        )

    # --- helpers -----------------------------------------------------------------------------

    def _new_index(self) -> int:
        while True:
            index = secrets.randbits(32)
            if index and index not in self._sessions and index not in self._handshakes:
                return index

    def set_watched(self, addresses: Iterable[str], now: float) -> None:
        """The peers whose silence must be noticed within a second, traffic or not (a full
        tunnel's gateways): their paths are checked as if they carried traffic, and more
        often. Replaces the previous set."""
        wanted = set(addresses)
        for address, peer in self.peers.items():
            watched = address in wanted
            if watched != peer.watched:
                peer.watched = watched
                self._touch(peer, now)
                if watched:
                    self._mark_traffic(peer, now)  # its paths proven now, not in 20 s

    def live_peers(self, now: float, among: Iterable[str] | None = None) -> set[str]:
        """Peers (of ``among``, or all) with a session and a path that works now (a gateway
        must be one of these for the full tunnel to go through it)."""
        peers = self.peers
        candidates = peers.items() if among is None else (
            (address, peers[address]) for address in among if address in peers
        )  # fmt: skip
        return {
            address
            for address, peer in candidates
            if peer.current is not None
            and peer.preferred is not None
            and peer.preferred.alive(now, self._window(peer, now))
        }

    def peer_views(self, now: float) -> list[PeerView]:
        """Every peer with its paths, as they are now (for the API and logs)."""
        return [
            PeerView(
                address=peer.address,
                state=self._state(peer, now).value,
                connected=peer.current is not None,
                root=peer.root,
                rtt=peer.preferred.rtt if peer.preferred else None,
                paths=tuple(
                    PathView(
                        endpoint=path.endpoint if isinstance(path, DirectPath) else None,
                        socket_id=path.socket_id if isinstance(path, DirectPath) else None,
                        via=path.via,
                        active=path.alive(now, self._window(peer, now)),
                        preferred=path is peer.preferred, rtt=path.rtt,
                        last_sent=self._wall(path.last_sent),
                        last_received=self._wall(path.last_received),
                    )
                    for path in peer.paths.values()
                ),
            )
            for peer in self.peers.values()
        ]

    def _wall(self, when: float) -> float | None:
        return None if when == -math.inf else when + self._wall_offset


def _wanted(peer: Peer, now: float) -> bool:
    """Reached, and kept reached, now: eager (a small network's member, a gateway), or
    needed."""
    return peer.eager or _needed(peer, now)


def _needed(peer: Peer, now: float) -> bool:
    """Worth a handshake when no path works: it carries traffic (or has some waiting), is a
    gateway we watch, or a root (a controller among them). An idle peer waits for its
    paths' probes, or for traffic."""
    return peer.root or bool(peer.queue) or _active(peer, now)


def _active(peer: Peer, now: float) -> bool:
    return peer.watched or now - peer.last_traffic < ACTIVE_WINDOW_S


def _probe_interval(peer: Peer, now: float) -> float:
    if peer.watched:
        return WATCHED_PROBE_INTERVAL_S
    return ACTIVE_PROBE_INTERVAL_S if _active(peer, now) else IDLE_PROBE_INTERVAL_S


def _path_changed(peer: Peer, path: Path | None) -> PathChanged:
    if isinstance(path, DirectPath):
        return PathChanged(peer.address, path.socket_id, path.endpoint)
    return PathChanged(peer.address, None, None, via=path.via if path else None)


def _endpoint(address: tuple) -> Endpoint:
    return (address[0], address[1])
