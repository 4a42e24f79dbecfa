"""A peer as the core keeps it: its identity, sessions, handshake, paths and timers (the fields
each part of the core reads and writes), and the rules that say how much attention it needs
now (wanted, needed, active: how eagerly it is reached, probed and kept)."""

from __future__ import annotations

import math

from ..identity import Identity
from ..messages import LocalEndpoints
from .events import PathChanged
from .handshakes import Initiation
from .lifecycle import State
from .paths import IDLE_PATH_ALIVE_S, PATH_ALIVE_S, DirectPath, Endpoint, Path, PathKey
from .session import Session
from .timing import (
    ACTIVE_PROBE_INTERVAL_S,
    ACTIVE_WINDOW_S,
    IDLE_PROBE_INTERVAL_S,
    WATCHED_PROBE_INTERVAL_S,
)

# (Python no longer shares one empty frozenset: this one is.)
NO_ENDPOINTS: frozenset[Endpoint] = frozenset()


class Peer:
    # Slots, not a __dict__: past 30 attributes an instance's dict stops sharing its keys
    # with the class's other instances and cost 1.2 KiB more a peer (a root of 10,000: 12 MiB).
    __slots__ = (
        "address", "bytes_received", "bytes_sent", "cookie_answered", "cookies", "current",
        "datagrams_received", "datagrams_sent", "due", "eager", "findable", "handshake",
        "handshake_index", "handshake_sent", "handshake_started", "hard", "hints", "identity",
        "keep", "last_data_received", "last_heard", "last_initiation_timestamp", "last_traffic",
        "local_hints", "local_hints_new", "mapped_hints", "networks", "next_probe",
        "no_path_probed", "no_path_since", "paths", "preferred", "previous", "probe_counter",
        "queue", "root", "routed_networks", "scheduled", "source_networks", "state",
        "thin_frames", "told_local", "unconfirmed", "verified", "watched",
    )

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.address = identity.address
        self.hints: set[Endpoint] = set()
        # Its own uplink addresses, as it told us (LocalEndpoints; it shares a network):
        # replaced whole, and until then one empty set that every peer shares (216 bytes).
        self.local_hints: frozenset[Endpoint] = NO_ENDPOINTS
        self.local_hints_new: list[float] = []  # when each new one came (a budget)
        # What went to it and came from it (GET /metrics): datagrams, and their bytes.
        self.datagrams_sent = self.bytes_sent = 0
        self.datagrams_received = self.bytes_received = 0
        self.told_local: LocalEndpoints | None = None  # ours, as we last told it
        self.hard = False  # its NAT maps per destination, it says (node/birthday.py)
        # It takes thin relay frames (node/wire.py), it says in its pings and pongs.
        self.thin_frames = False
        # Which of its endpoints a router of its maps to it (LocalEndpoints.mapped): a path
        # there is "port-mapped".
        self.mapped_hints: tuple[Endpoint, ...] = ()
        self.paths: dict[PathKey, Path] = {}  # by Path.key
        self.preferred: Path | None = None
        self.current: Session | None = None  # what we send on
        self.previous: Session | None = None  # still accepted while the peer switches over
        self.unconfirmed: Session | None = None  # responder side, until the initiator uses it
        self.handshake: Initiation | None = None  # ours, in flight
        self.handshake_index = 0
        self.handshake_sent = -math.inf
        self.cookie_answered: tuple[Endpoint, ...] = ()  # (few: one a path)
        self.cookies: dict[Endpoint, tuple[bytes, float]] = {}  # endpoint -> (cookie, since)
        self.handshake_started = -math.inf
        # Where the lifecycle table has it (node/lifecycle.py): moved only by its events.
        self.state = State.IDLE
        self.last_initiation_timestamp = b""
        # Kind, payload, hint: what waits for a session, sent in order and all at once (a
        # list: an empty deque costs 0.6 KiB a peer).
        self.queue: list[tuple[int, bytes, int]] = []
        self.last_traffic = -math.inf
        self.last_data_received = -math.inf  # the peer's own packets (not our probes' answers)
        self.next_probe = -math.inf
        self.no_path_probed = -math.inf  # when sending found no working path and probed
        self.no_path_since = math.inf  # when its last working path went (inf: one works)
        self.probe_counter = 0
        # Network id -> the addresses (packed) it may send from there.
        self.networks: dict[str, list[bytes]] = {}
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
        # When its turn in handle_timer is due (Upkeep.deadline), and the time of its
        # entry in the timer heap (inf: none). The entry may be earlier than ``due``: the
        # deadline moved later, and the entry is moved when it comes up.
        self.due = math.inf
        self.scheduled = math.inf
        self.watched = False  # a full tunnel's gateway: always active (set_watched)
        # Reached at once and kept connected, traffic or not: a member of a small network, or
        # the gateway of a route (EAGER_NETWORK_MEMBERS). Others are reached on demand.
        self.eager = False


def is_wanted(peer: Peer, now: float) -> bool:
    """Reached, and kept reached, now: eager (a small network's member, a gateway), or
    needed."""
    return peer.eager or is_needed(peer, now)


def is_needed(peer: Peer, now: float) -> bool:
    """Worth a handshake when no path works: it carries traffic (or has some waiting), is a
    gateway we watch, or a root (a controller among them). An idle peer waits for its
    paths' probes, or for traffic."""
    return peer.root or bool(peer.queue) or is_active(peer, now)


def is_active(peer: Peer, now: float) -> bool:
    return peer.watched or now - peer.last_traffic < ACTIVE_WINDOW_S


def probe_interval(peer: Peer, now: float) -> float:
    if peer.watched:
        return WATCHED_PROBE_INTERVAL_S
    return ACTIVE_PROBE_INTERVAL_S if is_active(peer, now) else IDLE_PROBE_INTERVAL_S


def window(peer: Peer, now: float) -> float:
    """How long a silent path counts as alive: short while probing every second."""
    return PATH_ALIVE_S if is_active(peer, now) else IDLE_PATH_ALIVE_S


def path_changed(peer: Peer, path: Path | None) -> PathChanged:
    if isinstance(path, DirectPath):
        return PathChanged(peer.address, path.socket_id, path.endpoint)
    return PathChanged(peer.address, None, None, via=path.via if path else None)
