"""The node core: a sans-I/O facade over the parts that keep peers, sessions, paths and timers.
No sockets and no clock.

Like aioquic's QuicConnection: the service feeds it datagrams (with the binder socket they
arrived on), IP packets from the taps, socket changes and the time; it reads back datagrams to
send (on a chosen socket), packets for the taps, events, and when to call it next. Handshake
initiations wait in a queue for process_handshakes (call it before reading datagrams out),
and unknown initiators' identities for identity_derived (node/admission.py). Anything
malformed, forged, replayed or unknown is dropped and counted in ``drops`` by reason; nothing
raises out of the receive path.

The parts, each in its own module with one job (docs/ARCHITECTURE.md): the registry of peers
and networks, each peer's machine (sessions and handshakes, by the lifecycle table), its
paths, sending, receiving, the responder (handshakes others start), the root client and the
root service, and the upkeep of each peer's timer (schedule.py, upkeep.py). They share one
NodeContext (context.py); this class wires them and is the only way in.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..identity import Identity
from ..messages import Message
from ..network.config import NetworkConfig
from ..offload import SuperPacket
from ..uplinks import UplinkTable
from .admission import IdentityKey
from .birthday import BirthdayPunch
from .context import NodeContext
from .events import ControlReceived, NodeEvent, PathChanged, PathView, PeerConnected, PeerView
from .machine import PeerMachine
from .pathing import PathKeeper
from .paths import DirectPath, Endpoint, path_kind
from .peer import Peer, window
from .prefixes import PrefixTable
from .receive import Receiver
from .registry import PeerRegistry
from .responder import Responder
from .rootclient import RootClient
from .rootservice import RootService
from .schedule import PeerSchedule
from .timing import DEADLINE_SLACK_S
from .transmit import Transmitter
from .upkeep import Upkeep

# What the service takes from here with the core itself.
__all__ = ["ControlReceived", "NodeCore", "PathChanged", "PeerConnected"]


class NodeCore:
    def __init__(
        self, identity: Identity, *, now: float, wall_time: float, relay: bool = False,
        uplinks: UplinkTable | None = None,
    ) -> None:
        """``uplinks``: the binder's table of our sockets (read, never written here; a table
        of its own when none is given, for a simulator to fill as a binder would)."""
        self.identity = identity
        node = self._node = NodeContext(identity, now=now, wall_time=wall_time, relay=relay,
                                        uplinks=UplinkTable() if uplinks is None else uplinks)
        self.uplinks = node.uplinks
        # The parts, for tests and benchmarks that drive one directly; the service uses only
        # the methods below.
        self.parts = node
        node.registry = self._registry = PeerRegistry(node)
        node.machine = PeerMachine(node)
        node.paths = self._paths = PathKeeper(node)
        node.tx = self._tx = Transmitter(node)
        node.rx = self._rx = Receiver(node)
        node.responder = self._responder = Responder(node, now)
        node.roots = self._roots = RootClient(node)
        node.rootservice = RootService(node)
        node.birthday = self._birthday = BirthdayPunch(node)
        node.upkeep = self._upkeep = Upkeep(node)
        node.schedule = self._schedule = PeerSchedule(
            now, node.upkeep.deadline, lambda peer: self.peers.get(peer.address) is peer
        )

    # --- what the service and the API read ---------------------------------------------------

    @property
    def relay(self) -> bool:
        return self._node.relay

    def set_roles(self, *, relay: bool, meets_strangers: bool) -> None:
        """``relay``: serve as a root (answer look-ups, introduce, relay). ``meets_strangers``:
        unknown nodes' initiations are checked at a root's rate (a root and a controller meet
        them) rather than at a trickle (node/admission.py)."""
        self._node.relay = relay
        self._node.meets_strangers = meets_strangers

    def set_exit_networks(self, networks: Iterable[str]) -> None:
        """The networks this node forwards for as their exit node (routing/exit_node.py),
        told to the members that ask where their traffic leaves (whoami)."""
        self._node.exit_networks = frozenset(networks)

    @property
    def peers(self) -> dict[str, Peer]:
        return self._registry.peers

    @property
    def networks(self) -> dict[str, PrefixTable]:
        return self._registry.networks

    @property
    def drops(self):  # Counter[str]: received datagrams refused, by reason (node/drops.py)
        return self._node.drops

    @property
    def packet_drops(self):  # Counter[str]: IP packets refused, by reason (node/drops.py)
        return self._node.packet_drops

    @property
    def accepted(self) -> int:
        return self._node.accepted

    @property
    def own_ips(self) -> frozenset[str]:
        return self._paths.own_ips

    @property
    def refused_hints(self) -> set[tuple[str, Endpoint]]:
        return self._paths.refused_hints

    @property
    def evicted_transient_peers(self) -> int:
        return self._responder.evicted_transient_peers

    @property
    def refused_member_identities(self) -> int:
        return self._registry.refused_member_identities

    @property
    def forged_identities(self) -> int:
        return self._registry.forged_identities

    @property
    def chunks_resent(self) -> int:
        return self._tx.chunks_resent

    @property
    def cookie_replies_sent(self) -> int:
        return self._responder.cookie_replies_sent

    def counters(self) -> dict:
        """What the core accepted and refused, by reason (docs/PROTOCOL.md names each)."""
        return {
            "datagramsAccepted": self.accepted,
            "datagramDrops": dict(sorted(self.drops.items())),
            "packetDrops": dict(sorted(self.packet_drops.items())),
            "refusedEndpointHints": len(self.refused_hints),
            "evictedTransientPeers": self.evicted_transient_peers,
            "cookieRepliesSent": self.cookie_replies_sent,
            "initiationsWaiting": self.initiations_waiting(),
            "refusedMemberIdentities": self.refused_member_identities,
            "forgedIdentities": self.forged_identities,
            # Where our roots see us, per binder socket (our public side of any NAT), and how
            # often that changed (a NAT's new address: peers are told at once).
            "publicEndpoints": dict(sorted(self._paths.public.items())),
            "publicEndpointChanges": self._paths.outside.changes,
            "nat": self._paths.nat_view(),
            "handshakes": dict(sorted(self._node.handshakes.items())),
            "handovers": self._paths.handovers,
            "lastHandoverSilenceSeconds": round(self._paths.last_handover_silence, 3),
            "birthday": self._birthday.view(),
        }

    # --- configuration -----------------------------------------------------------------------

    def set_networks(self, configs: Iterable[NetworkConfig], now: float) -> None:
        """Replace the set of networks; peers in none of them are forgotten (registry.py)."""
        self._registry.set_networks(configs, now)

    def set_gateways(self, choices: dict[tuple[str, int], str]) -> None:
        """Which member each (network, family)'s default route goes through now."""
        self._registry.set_gateways(choices)

    def set_roots(self, roots: Iterable[tuple[Identity, Iterable[Endpoint]]], now: float) -> None:
        """Roots answer identity look-ups, introduce peers and relay; we stay connected."""
        self._roots.set_roots(roots, now)

    def set_watched(self, addresses: Iterable[str], now: float) -> None:
        """The peers whose silence must be noticed within a second (a full tunnel's gateways)."""
        self._paths.set_watched(addresses, now)

    def say_goodbye(self, now: float) -> None:
        """Stopping: tell every connected peer."""
        self._tx.say_goodbye(now)

    # --- the physical side -------------------------------------------------------------------

    def socket_up(self, socket_id: int, now: float) -> None:
        self._paths.socket_up(socket_id, now)

    def socket_down(self, socket_id: int, now: float) -> None:
        self._paths.socket_down(socket_id, now)

    def socket_readdressed(self, socket_id: int, now: float) -> None:
        self._paths.socket_readdressed(socket_id, now)

    def set_own_addresses(self, addresses: Iterable[str], now: float, port: int = 0) -> None:
        self._paths.set_own_addresses(addresses, now, port)

    def behind_nat(self, socket_id: int) -> bool:
        """Whether a root sees us over this socket at an address that is not our own."""
        return self._paths.behind_nat(socket_id)

    def set_port_mapping(self, socket_id: int, endpoint: str | None, now: float) -> None:
        """Where a router maps a port to this socket ("ip/port"; None: no longer): told to
        members, who can then reach us through NATs that map per destination."""
        self._paths.set_port_mapping(socket_id, endpoint, now)

    def spares_opened(self, attempt: int, socket_ids: list[int], now: float) -> None:
        """The spare sockets a SparesWanted event asked for, as opened (maybe fewer, or none);
        they are closed by a SparesDone event."""
        self._birthday.spares_opened(attempt, socket_ids, now)

    def uplinks_ranked(self, now: float) -> None:
        self._paths.uplinks_ranked(now)

    def routes_changed(self, now: float) -> None:
        self._paths.routes_changed(now)

    # --- inputs --------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, socket_id: int, address: tuple, now: float) -> None:
        self._rx.receive_datagrams([data], socket_id, address, now)

    def receive_datagrams(self, datagrams: list[bytes], socket_id: int, address: tuple,
                          now: float) -> None:  # fmt: skip
        """Datagrams from one sender on one socket."""
        self._rx.receive_datagrams(datagrams, socket_id, address, now)

    def receive_coalesced(self, data: bytes, size: int, socket_id: int, address: tuple,
                          now: float) -> None:  # fmt: skip
        """One read of a socket: datagrams of ``size`` bytes (the last maybe shorter) as UDP
        GRO joined them, or one datagram (size 0)."""
        self._rx.receive_coalesced(data, size, socket_id, address, now)

    def send_packet(self, network_id: str, packet: bytes, now: float, hint: int = 0) -> None:
        """An IP packet from a network's tap; ``hint`` says where a partial checksum is."""
        self._tx.send_packets(network_id, [(packet, hint)], now)

    def send_packets(self, network_id: str, packets: list[tuple[bytes, int]], now: float) -> None:
        self._tx.send_packets(network_id, packets, now)

    def send_super_packet(self, network_id: str, packet: SuperPacket, now: float) -> None:
        self._tx.send_super_packet(network_id, packet, now)

    def send_control(self, address: str, message: Message, now: float) -> None:
        """Send a control message to any node, looking it up through the roots if needed."""
        self._roots.send_control(address, message, now)

    def ask_address(self, address: str, query_id: int, now: float) -> bool:
        """Ask a peer where it sees us (the answer comes as a ControlReceived event)."""
        return self._roots.ask_address(address, query_id, now)

    def lookup(self, address: str, now: float) -> None:
        """Find a node by address through the roots; it becomes a kept peer when found."""
        self._roots.lookup(address, now)

    def reach(self, identity: Identity, endpoints: Iterable[Endpoint], now: float) -> None:
        """A node we are about to send to and may not know (registry.py)."""
        self._registry.reach(identity, endpoints, now)

    def process_handshakes(self, now: float) -> None:
        """Handle the initiations that passed the cheap checks (one DH computation each)."""
        self._responder.process_handshakes(now)

    def initiations_waiting(self) -> int:
        """Initiations queued or waiting for an identity check: a flood's backlog."""
        return self._responder.waiting()

    def identity_requests(self) -> list[IdentityKey]:
        """Identities whose address the service should derive, off the event loop."""
        return self._responder.identity_requests()

    def identity_derived(self, key: IdentityKey, address: str | None, now: float) -> None:
        """The address of an identity asked for (None: the check failed)."""
        self._responder.identity_derived(key, address, now)

    # --- outputs -------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[int, Endpoint, list[bytes], int]]:
        """Runs of datagrams, in order: (socket id, endpoint, datagrams, uniform size)."""
        node = self._node
        out, node.datagrams = node.datagrams, []
        return out

    def packets_for_tap(self) -> dict[str, list[tuple[bytes, int]]]:
        """Network id -> the (IP packet, partial-checksum hint) pairs to deliver, in order."""
        node = self._node
        out, node.packets = node.packets, {}
        return out

    def datagrams_pending(self) -> bool:
        node = self._node
        return bool(node.datagrams or node.packets or node.events)

    def next_event(self) -> NodeEvent | None:
        events = self._node.events
        return events.popleft() if events else None

    # --- time ----------------------------------------------------------------------------------

    def next_timer(self) -> float:
        """When handle_timer next has something to do (inf: only an input can give it work)."""
        others = min(self._roots.lookups.next_due(), self._responder.intake.identities.next_due(),
                     self._rx.reassembly.next_due())  # fmt: skip
        return min(self._schedule.next_due(), others + DEADLINE_SLACK_S)

    def handle_timer(self, now: float) -> None:
        """Do what is due by ``now``, and nothing else: the peers whose deadline has come
        (each a few lines of work), then look-ups, identity checks and chunk requests."""
        self._schedule.run_due(now, self._upkeep.tick)
        for address in self._roots.lookups.due(now):
            self._roots.lookup(address, now)
        self._responder.intake.identities.expire(now)
        self._rx.ask_for_missing_chunks(now)

    # --- views ---------------------------------------------------------------------------------

    def peer_endpoints(self, address: str, now: float) -> list[str]:
        """Where a peer is reachable as we see it ("ip/port"), for its controller's config."""
        peer = self.peers.get(address)
        return self._node.rootservice.endpoints_of(peer, now) if peer is not None else []

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
            and peer.preferred.alive(now, window(peer, now))
        }

    def peer_views(self, now: float) -> list[PeerView]:
        """Every peer with its paths, as they are now (for the API and logs)."""
        wall = self._node.wall
        return [
            PeerView(
                address=peer.address,
                state=peer.state.value,
                connected=peer.current is not None,
                root=peer.root,
                rtt=peer.preferred.rtt if peer.preferred else None,
                paths=tuple(
                    PathView(
                        endpoint=path.endpoint if isinstance(path, DirectPath) else None,
                        socket_id=path.socket_id if isinstance(path, DirectPath) else None,
                        via=path.via, kind=path_kind(path, peer.mapped_hints),
                        active=path.alive(now, window(peer, now)),
                        preferred=path is peer.preferred, rtt=path.rtt,
                        last_sent=wall(path.last_sent),
                        last_received=wall(path.last_received),
                    )
                    for path in peer.paths.values()
                ),
                datagrams_sent=peer.datagrams_sent, bytes_sent=peer.bytes_sent,
                datagrams_received=peer.datagrams_received, bytes_received=peer.bytes_received,
            )
            for peer in self.peers.values()
        ]
