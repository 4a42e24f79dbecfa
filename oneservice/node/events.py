"""What the core tells its driver: events (drained with next_event) and views of its peers
(for the API and logs). Plain data; the JSON is built by whoever shows it."""

from __future__ import annotations

from ..messages import ConfigAnswer, ConfigDelta, ConfigRequest
from ..records import record
from .paths import Endpoint


@record
class PeerConnected:
    address: str


@record
class ControlReceived:
    """A control message for the service (network config requests and answers)."""

    address: str
    message: ConfigRequest | ConfigAnswer | ConfigDelta


@record
class PathChanged:
    """The peer's traffic now takes another path: direct (socket and endpoint), through root
    ``via``, or none (all three None)."""

    address: str
    socket_id: int | None
    endpoint: Endpoint | None
    via: str | None = None

    def where(self) -> str:
        """As a log line says it."""
        if self.endpoint is not None:
            return f"socket {self.socket_id} -> {self.endpoint[0]}/{self.endpoint[1]}"
        return f"root {self.via} (relayed)" if self.via else "no working path"


@record
class SeenFromOutside:
    """Where a root sees us over a socket changed (``behind_nat``: at an address that is
    not our own): whether to ask the router for a port mapping (portfeed.py)."""

    socket_id: int
    behind_nat: bool


@record
class SparesWanted:
    """Open ``count`` more sockets on the interface of socket ``socket_id``, each on a port of
    its own, and say which (NodeCore.spares_opened): a birthday attempt (node/birthday.py)."""

    attempt: int
    socket_id: int
    count: int


@record
class SparesDone:
    """Close these spare sockets: their attempt is over, or their path is gone."""

    socket_ids: tuple[int, ...]


NodeEvent = (PeerConnected | PathChanged | ControlReceived | SeenFromOutside | SparesWanted
             | SparesDone)  # fmt: skip


@record
class PathView:
    endpoint: Endpoint | None  # None: a relay path
    socket_id: int | None
    via: str | None  # the root a relay path goes through
    kind: str  # node/paths.py: direct, lan, port-mapped, birthday or relayed
    active: bool
    preferred: bool
    rtt: float | None  # seconds
    last_sent: float | None  # wall-clock seconds since the epoch; None: never
    last_received: float | None


@record
class PeerView:
    address: str
    state: str  # node/lifecycle.py: idle, handshaking, unreachable, connected, rekeying
    connected: bool
    root: bool
    rtt: float | None  # of its preferred path, seconds
    paths: tuple[PathView, ...]
    # What went to it and came from it: datagrams, and their bytes.
    datagrams_sent: int = 0
    bytes_sent: int = 0
    datagrams_received: int = 0
    bytes_received: int = 0
