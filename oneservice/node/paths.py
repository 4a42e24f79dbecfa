"""Paths to a peer and the choice among them (pure)."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping

Endpoint = tuple[str, int]

# A path counts as alive this long after it last delivered an authenticated packet. Probes go
# every ACTIVE_PROBE_INTERVAL_S on every path of a peer with traffic, so a working path is
# never close to this, and a silently dead one is dropped in ~3 s. (ZeroTier: 19 s.)
PATH_ALIVE_S = 3.0
# An idle peer is probed every 20 s; its paths stay alive across two missed probes.
IDLE_PATH_ALIVE_S = 50.0
# A probe unanswered this long (or 4 RTTs, if longer), with nothing else heard since it left,
# means the path is gone now: do not wait for PATH_ALIVE_S, and never switch back to it.
PROBE_TIMEOUT_S = 0.5
PROBE_TIMEOUT_RTTS = 4
# Another path must be this much faster to take over: RTT jitter must not flap traffic.
SWITCH_RTT_RATIO = 0.7
RTT_SMOOTHING = 0.25


PathKey = tuple[int, Endpoint] | str  # a direct path's (socket, endpoint); a relay's root


class Path:
    """What every path has: liveness from what was heard over it, probes and their answers,
    and an RTT. A path is direct (DirectPath) or through a root (RelayPath)."""

    __slots__ = ("last_received", "last_sent", "peer_prefers", "probe_id", "probe_sent", "rtt",
                 "strict", "unanswered_since")  # fmt: skip
    via: str | None = None  # the root a relay path goes through; None: direct
    learned = False  # seen from the peer (roaming); hints come from the network

    def __init__(self) -> None:
        self.last_received = -math.inf
        self.last_sent = -math.inf
        self.rtt: float | None = None
        self.probe_id = 0
        self.probe_sent = -math.inf
        # When the oldest probe still unanswered left. Later probes do not move it: a path
        # whose probe timed out stays dead until something is heard over it, instead of
        # coming back to life for a probe timeout with every new probe (a flapping tunnel).
        self.unanswered_since = -math.inf
        # After a route change only the probe's answer proves the path: packets still
        # arriving over it say nothing about whether ours still leave (one-way failure).
        self.strict = False
        # The peer's latest ping marked this path as its preferred one: of the paths that
        # leave through the same uplink of ours, the one the peer's own uplink choice favours.
        self.peer_prefers = False

    @property
    def key(self) -> PathKey:
        raise NotImplementedError

    def alive(self, now: float, window: float = PATH_ALIVE_S) -> bool:
        if now - self.last_received > window:
            return False
        if self.probe_outstanding():
            return now - self.unanswered_since <= self.probe_timeout()
        return True

    def dies_at(self, window: float = PATH_ALIVE_S) -> float:
        """After this, alive() is false unless something is heard meanwhile."""
        end = self.last_received + window
        if self.probe_outstanding():
            end = min(end, self.unanswered_since + self.probe_timeout())
        return end

    def probe_timeout(self) -> float:
        return max(PROBE_TIMEOUT_S, PROBE_TIMEOUT_RTTS * (self.rtt or 0.0))

    def probe_leaving(self, probe_id: int, now: float) -> None:
        if not self.probe_outstanding():
            self.unanswered_since = now
        self.probe_id = probe_id
        self.probe_sent = now

    def probe_outstanding(self) -> bool:
        """A probe left after the last thing we heard (or, strict, is simply unanswered):
        unproven until it is answered."""
        if self.strict:
            return self.probe_sent > -math.inf
        return self.probe_sent > self.last_received

    def record_rtt(self, sample: float) -> None:
        self.rtt = sample if self.rtt is None else self.rtt + RTT_SMOOTHING * (sample - self.rtt)


class DirectPath(Path):
    """From one of our sockets to one endpoint of the peer."""

    __slots__ = ("birthday", "endpoint", "learned", "socket_id")

    def __init__(self, socket_id: int, endpoint: Endpoint, learned: bool = False) -> None:
        super().__init__()
        self.socket_id = socket_id
        self.endpoint = endpoint
        self.learned = learned
        self.birthday = False  # made by node/birthday.py (through a NAT that maps per peer)

    @property
    def key(self) -> PathKey:
        return (self.socket_id, self.endpoint)

    def __repr__(self) -> str:
        return f"DirectPath(socket {self.socket_id} -> {self.endpoint[0]}/{self.endpoint[1]})"


class RelayPath(Path):
    """Through a root, which passes our sealed datagrams on to the peer (and its to us): the
    root's own session and preferred path carry them, so it has no socket or endpoint."""

    __slots__ = ("to", "via")

    def __init__(self, via: str, to: str) -> None:
        super().__init__()
        self.via = via  # the root's address
        self.to = to  # the peer's address, at the far end

    @property
    def key(self) -> PathKey:
        return self.via

    def __repr__(self) -> str:
        return f"RelayPath(via {self.via} -> {self.to})"


def choose_path(
    paths: Iterable[Path],
    current: Path | None,
    now: float,
    window: float = PATH_ALIVE_S,
    socket_rank: Mapping[int, int] | None = None,
) -> Path | None:
    """The alive path through the uplink the OS prefers (lowest ``socket_rank``: the default
    route's metric), then the one the peer prefers, then the lowest RTT; the current one
    stays unless beaten on rank or clearly on RTT."""
    def rank(p: Path) -> int:
        return socket_rank.get(p.socket_id, 0) if socket_rank and isinstance(p, DirectPath) else 0
    alive = [p for p in paths if p.alive(now, window)]
    if not alive:
        return None
    # Never switch to a path whose latest probe is unanswered: right after a peer moves, its
    # old path still looks alive (recently heard, good RTT) but is already dead.
    eligible = [p for p in alive if p is current or not p.probe_outstanding()] or alive

    def preference(p: Path) -> tuple:
        # Direct paths first, whatever the relay's RTT: a relay costs the root's bandwidth.
        return (p.via is not None, rank(p), not p.peer_prefers)

    best = min(eligible, key=lambda p: (*preference(p),
                                        p.rtt if p.rtt is not None else math.inf,
                                        -p.last_received))  # fmt: skip
    if current is not None and current in alive and current is not best:
        if preference(best) != preference(current):
            return best if preference(best) < preference(current) else current
        if best.rtt is None or current.rtt is None:
            return current
        if best.rtt > current.rtt * SWITCH_RTT_RATIO:
            return current
    return best


# What a path is, as the API and the CLI say it.
KIND_DIRECT = "direct"  # to the peer's public (or routed) address
KIND_LAN = "lan"  # to a private, unique-local or link-local address: the same site
KIND_RELAYED = "relayed"  # through a root
KIND_PORT_MAPPED = "port-mapped"  # to where the peer's router maps a port to it (portmap/)
KIND_BIRTHDAY = "birthday"  # through a NAT that maps per destination, found by node/birthday.py
_LAN_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7", "fe80::/10",
))  # fmt: skip


def path_kind(path: Path, mapped: Iterable[Endpoint] = ()) -> str:
    """``mapped``: the peer's endpoints that its routers map to it."""
    if not isinstance(path, DirectPath):
        return KIND_RELAYED
    if path.birthday:
        return KIND_BIRTHDAY
    if path.endpoint in mapped:
        return KIND_PORT_MAPPED
    return KIND_LAN if lan_ip(path.endpoint[0]) else KIND_DIRECT


def lan_ip(ip: str) -> bool:
    """A private, unique-local or link-local address: one site's own."""
    try:
        address = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return False
    return any(address in n for n in _LAN_NETWORKS if n.version == address.version)


def endpoint_of(address: tuple) -> Endpoint:
    """A socket address (IPv6 ones have four fields) as the endpoint a path keeps."""
    return (address[0], address[1])
