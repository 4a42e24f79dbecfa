"""What the parts of the core share: who we are, what goes out, what was counted, and the
parts themselves.

NodeCore (core.py) makes one NodeContext and the parts, each of which keeps a reference to it
and owns its own facts: the registry the peers and networks, the machine the sessions and
handshakes, the paths the sockets and our own addresses, the roots the roots and look-ups, and
so on. A part reaches another only through ``node.<part>``; it never writes another part's
fields. The parts are imported here for their types only (they import this module).
"""

from __future__ import annotations

from collections import Counter, deque
from typing import TYPE_CHECKING

from ..identity import Identity
from ..uplinks import UplinkTable
from .events import NodeEvent
from .paths import Endpoint

if TYPE_CHECKING:
    from .birthday import BirthdayPunch
    from .machine import PeerMachine
    from .pathing import PathKeeper
    from .receive import Receiver
    from .registry import PeerRegistry
    from .responder import Responder
    from .rootclient import RootClient
    from .rootservice import RootService
    from .schedule import PeerSchedule
    from .transmit import Transmitter
    from .upkeep import Upkeep


class NodeContext:
    # The parts, set once by NodeCore before any input arrives.
    registry: PeerRegistry
    machine: PeerMachine
    paths: PathKeeper
    tx: Transmitter
    rx: Receiver
    responder: Responder
    roots: RootClient
    rootservice: RootService
    upkeep: Upkeep
    schedule: PeerSchedule
    birthday: BirthdayPunch

    def __init__(self, identity: Identity, *, now: float, wall_time: float, relay: bool,
                 uplinks: UplinkTable) -> None:  # fmt: skip
        self.identity = identity
        self.uplinks = uplinks  # the binder's sockets (oneservice/uplinks.py)
        self.static_key = identity.x25519_private_key()
        # Initiation timestamps must grow across restarts: wall time, advanced by our clock.
        self.wall_offset = wall_time - now
        # Relay for others (roots do): forward their datagrams to peers we have sessions with.
        self.relay = relay
        # Whether strangers' initiations are checked at a root's rate (a root's and a
        # controller's: nodes to be found, joiners) or at a trickle (node/admission.py).
        self.meets_strangers = relay
        # The networks this node serves as exit node for now (routing's exit plan, as the
        # kernel has it): a member's whoami says whether its gateway forwards for it.
        self.exit_networks: frozenset[str] = frozenset()
        # Runs of datagrams, each to one endpoint from one socket, and the size all of them
        # but a shorter last one have, where that is known (0: not known): binder/gso.py.
        self.datagrams: list[tuple[int, Endpoint, list[bytes], int]] = []
        # Per network, in arrival order: (IP packet, partial-checksum hint). Grouped here
        # because each network's tap writes its own batch.
        self.packets: dict[str, list[tuple[bytes, int]]] = {}
        self.events: deque[NodeEvent] = deque()
        # Received datagrams refused, by reason. Every datagram received is either accepted
        # (authenticated) or counted here once, so the two add up to what the binder delivered.
        self.drops: Counter[str] = Counter()
        self.accepted = 0
        # IP packets refused, by reason: from taps (no route, queue full, ...) and inside
        # accepted datagrams (source not allowed, malformed control, ...).
        self.packet_drops: Counter[str] = Counter()
        # Handshakes: "initiated" (ours, each retry included), "completed" (a session made,
        # ours answered or theirs confirmed).
        self.handshakes: Counter[str] = Counter()

    def wall(self, when: float) -> float | None:
        """A time of our clock as wall time (None: never)."""
        return None if when == -float("inf") else when + self.wall_offset
