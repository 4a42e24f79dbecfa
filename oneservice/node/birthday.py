"""A direct path through a NAT that gives each destination its own random port (a "hard"
NAT: most carriers'), when the other side's NAT keeps one mapping for every destination: the
birthday technique (pure).

Nobody can reach a member behind a hard NAT at the endpoint its root sees: that mapping is for
the root alone. So a pair that stays relayed, with exactly one hard side, tries this, bounded
and backing off:

- the hard side opens SPARES extra sockets on its hard uplink and sends from each one probe
  to the easy side's public endpoint (as a root observed it). Its NAT now holds SPARES
  mappings toward that endpoint, at ports nobody can predict; the easy side's NAT drops the
  probes, but not the mappings;
- it asks the easy side, over the relayed session, to probe where the roots see it: the easy
  side sends at most PROBES probes, in batches, to random ports at that address near the port
  a root saw (PROBE_WINDOW), and to nothing else;
- a probe that lands on one of the mappings reaches a spare socket. That socket and the easy
  side's endpoint are the pair's direct path ("birthday" in /peer), kept while it works; the
  other spares close when the attempt ends.

With S spares and P probes over the N ports a NAT picks from, some probe meets some mapping
with probability 1 - (1 - S/N)^P when every probe lands among them: 64 % per attempt over all
64,512 ports, near certainty over a carrier's block of 1,024 ports per subscriber (the window
around the port a root saw covers the block). A failed attempt is tried again after
FIRST_TRY_S, doubling up to MOST_TRY_S.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from collections import Counter
from dataclasses import dataclass, field

from ..messages import Birthday, Ping, encode
from ..randomness import random_sample
from . import wire
from .context import NodeContext
from .events import SparesDone, SparesWanted
from .paths import DirectPath, Endpoint, RelayPath, lan_ip
from .peer import Peer, is_active

SPARES = 256  # sockets the hard side opens per attempt (one attempt at a time)
PROBES = 256  # probes the easy side sends per attempt, at most
PROBE_BATCH = 32  # ... this many at a time, PROBE_GAP_S apart (no burst of 256 at a router)
PROBE_GAP_S = 0.05
# The hard side waits this long for the spares, then for a probe to land, then gives up.
SPARES_WAIT_S = 2.0
ATTEMPT_S = 3.0
# A pair relayed with traffic this long tries (introductions had their chance), then again
# after twice as long each time, up to the most.
FIRST_TRY_S = 2.0
MOST_TRY_S = 300.0
# The easy side answers one peer's requests at most this far apart, the gap doubling with each
# (three quarters of the hard side's own backoff), and starting afresh after a long
# silence; it probes for at most MAX_PROBING peers at once. No member can make it probe more
# often than an honest hard side would ask.
MIN_REQUEST_GAP_S = 1.5
MAX_PROBING = 4
MAX_KEPT = 16  # spare sockets kept as direct paths, over all peers
FIRST_PORT = 1024  # NATs give out ports above the well-known ones
# The easy side probes ports within this window around the port where a root saw the hard
# side. A carrier's NAT hands each subscriber a block of ports (RFC 7422: hundreds to a few
# thousand), so its mappings lie near that port: most probes then land in the block. A NAT
# that picks from all ports is met as often in the window as anywhere.
PROBE_WINDOW = 4096


@dataclass
class _Attempt:
    """Ours, as the hard side."""

    id: int
    peer: str
    uplink: int  # the socket whose NAT is hard
    target: Endpoint  # the easy side's public endpoint
    ends: float
    spares: list[int] = field(default_factory=list)
    winner: int | None = None


@dataclass
class _Probing:
    """Ours, as the easy side: the probes still to send, and until when we look out for
    what they make."""

    socket_id: int
    ip: str
    ports: list[int]
    next_at: float
    until: float


class BirthdayPunch:
    def __init__(self, node: NodeContext) -> None:
        self.node = node
        self._attempt: _Attempt | None = None
        self._attempt_ids = 0
        self._next_try: dict[str, tuple[float, float]] = {}  # peer -> (when, interval)
        self._kept: dict[int, tuple[str, int]] = {}  # spare socket -> (peer, its uplink)
        self._probing: dict[str, _Probing] = {}
        # peer -> when we last began probing for it, and the gap its next request must keep
        self._answered: dict[str, tuple[float, float]] = {}
        # attempts (ours, as the hard side), probed (requests we probed for), probes (sent),
        # direct (paths found, either side)
        self.counts: Counter[str] = Counter()

    # --- what the rest of the core asks ------------------------------------------------------

    def owns(self, socket_id: int, peer: Peer) -> bool:
        """Whether ``socket_id`` is one of our spares for this peer (a path may use it)."""
        attempt = self._attempt
        if attempt is not None and attempt.peer == peer.address and socket_id in attempt.spares:
            return True
        return self._kept.get(socket_id, ("", 0))[0] == peer.address

    def first_heard(self, peer: Peer, path: DirectPath, now: float) -> None:
        """Something authenticated came over a direct path for the first time: if an attempt
        made it, it is a birthday path; the hard side proves it at once (our probe's answer
        moves our traffic there, and our next probe says so to the peer). On the easy side,
        any path to the hard side's address that starts to work while we probe is the
        attempt's: its NAT lets in nothing else (one of its spares may even have been given
        the port its root sees, which we probe anyway)."""
        attempt = self._attempt
        if attempt is not None and attempt.peer == peer.address and path.socket_id in (
                attempt.spares):  # fmt: skip
            # Learned: forgotten when silent (node/upkeep.py), and then its spare closes.
            path.birthday = path.learned = True
            if attempt.winner is None:
                attempt.winner = path.socket_id
                self.counts["direct"] += 1
            self.node.paths.probe_path(peer, path, now)
            return
        probing = self._probing.get(peer.address)
        if probing is not None and path.endpoint[0] == probing.ip:
            path.birthday = True
            self.counts["direct"] += 1

    def forget(self, peer: Peer, now: float) -> None:
        """The peer is gone: its spares close."""
        self._probing.pop(peer.address, None)
        self._next_try.pop(peer.address, None)
        self._answered.pop(peer.address, None)
        attempt = self._attempt
        if attempt is not None and attempt.peer == peer.address:
            self._end_attempt(keep=False)
        self._close([s for s, (owner, _) in self._kept.items() if owner == peer.address])

    def uplink_down(self, socket_id: int) -> None:
        """Our uplink is gone, and with it what its spares were for."""
        attempt = self._attempt
        if attempt is not None and attempt.uplink == socket_id:
            self._end_attempt(keep=False)
        self._close([s for s, (_, uplink) in self._kept.items() if uplink == socket_id])

    # --- the peer's turn (node/upkeep.py) ----------------------------------------------------

    def due(self, peer: Peer, now: float) -> float:
        address = peer.address
        attempt = self._attempt
        due = attempt.ends if attempt is not None and attempt.peer == address else math.inf
        probing = self._probing.get(address)
        if probing is not None:
            due = min(due, probing.next_at if probing.ports else probing.until)
        if any(owner == address and not self._spare_path(peer, s)
               for s, (owner, _) in self._kept.items()):  # fmt: skip
            return now  # its path is gone: the spare closes
        if address in self._next_try:
            # (not wanted any more: the turn forgets the backoff)
            return min(due, self._next_try[address][0] if self._wanted(peer, now) else now)
        return now if self._wanted(peer, now) else due  # (the turn starts the backoff)

    def run(self, peer: Peer, now: float) -> None:
        address = peer.address
        attempt = self._attempt
        if attempt is not None and attempt.peer == address and now >= attempt.ends:
            self._end_attempt(keep=True)
        probing = self._probing.get(address)
        if probing is not None:
            if probing.ports and now >= probing.next_at:
                self._send_probes(peer, probing, now)
            elif not probing.ports and now >= probing.until:
                del self._probing[address]
                self._forget_losers(peer, probing.ip, now)
        self._close([s for s, (owner, _) in self._kept.items()
                     if owner == address and not self._spare_path(peer, s)])  # fmt: skip
        if not self._wanted(peer, now):
            self._next_try.pop(address, None)  # direct, or quiet: a later relay starts afresh
            return
        when, interval = self._next_try.get(address, (now + FIRST_TRY_S, FIRST_TRY_S))
        if now < when:
            self._next_try[address] = (when, interval)
        elif self._start(peer, now):
            self._next_try[address] = (now + interval, min(interval * 2, MOST_TRY_S))
        else:  # another peer's attempt runs, or no spare may be kept: look again later
            self._next_try[address] = (now + ATTEMPT_S, interval)

    # --- the hard side -----------------------------------------------------------------------

    def _wanted(self, peer: Peer, now: float) -> bool:
        """Relayed with traffic, a member that is not hard itself, and we are."""
        return (isinstance(peer.preferred, RelayPath) and peer.current is not None
                and bool(peer.networks) and not peer.root and not peer.hard
                and is_active(peer, now) and self._hard_uplink() is not None
                and self._target(peer) is not None)  # fmt: skip

    def _hard_uplink(self) -> int | None:
        families, hard = self.node.uplinks.families, self.node.paths.hard
        return next((s for s in sorted(families) if families[s] == socket.AF_INET and hard(s)),
                    None)  # fmt: skip

    @staticmethod
    def _target(peer: Peer) -> Endpoint | None:
        """The peer's public endpoint as a root or its controller saw it (its own word for
        it first, if it says the same)."""
        public = [e for e in peer.hints if _public_ipv4(e[0])]
        fresh = [e for e in public if e in peer.local_hints]
        return min(fresh or public, default=None)

    def _start(self, peer: Peer, now: float) -> bool:
        uplink, target = self._hard_uplink(), self._target(peer)
        if self._attempt is not None or len(self._kept) >= MAX_KEPT or uplink is None or (
                target is None):  # fmt: skip
            return False
        self._attempt_ids += 1
        self._attempt = _Attempt(self._attempt_ids, peer.address, uplink, target,
                                 now + SPARES_WAIT_S)  # fmt: skip
        self.counts["attempts"] += 1
        self.node.events.append(SparesWanted(self._attempt_ids, uplink, SPARES))
        return True

    def spares_opened(self, attempt_id: int, spares: list[int], now: float) -> None:
        """The sockets the driver opened for an attempt: each sends its probe to the easy
        side, then the easy side is asked to probe back."""
        attempt = self._attempt
        peer = self.node.registry.peers.get(attempt.peer) if attempt is not None else None
        if attempt is None or attempt.id != attempt_id or peer is None or not spares:
            self._close(spares)
            return
        attempt.spares = list(spares)
        attempt.ends = now + ATTEMPT_S
        for spare in spares:
            self._probe(peer, DirectPath(spare, attempt.target), now)
        ip = self.node.paths.public[attempt.uplink].rpartition("/")[0]
        self.node.tx.send_message(peer, Birthday(ip, _text(attempt.target)), now)
        self.node.schedule.touch(peer, now)

    def _end_attempt(self, keep: bool) -> None:
        attempt, self._attempt = self._attempt, None
        assert attempt is not None
        winner = attempt.winner if keep else None
        if winner is not None:
            self._kept[winner] = (attempt.peer, attempt.uplink)
        peer = self.node.registry.peers.get(attempt.peer)
        losers = [s for s in attempt.spares if s != winner]
        if peer is not None:
            for key in [k for k, p in peer.paths.items()
                        if isinstance(p, DirectPath) and p.socket_id in losers]:  # fmt: skip
                if peer.preferred is peer.paths[key]:
                    peer.preferred = None
                del peer.paths[key]
        self._close(losers)

    def _close(self, spares: list[int]) -> None:
        for spare in spares:
            self._kept.pop(spare, None)
        if spares:
            self.node.events.append(SparesDone(tuple(spares)))

    @staticmethod
    def _spare_path(peer: Peer, spare: int) -> bool:
        return any(isinstance(p, DirectPath) and p.socket_id == spare
                   for p in peer.paths.values())  # fmt: skip

    # --- the easy side -----------------------------------------------------------------------

    def receive_request(self, peer: Peer, message: Birthday, now: float) -> None:
        """A hard member asks us to probe where its root sees it: only a member we reach
        through a root only, only at an address a root or its controller saw it at, from the
        socket it sent to (which our NAT maps the same way for everyone), at most so often."""
        self._mark_early_paths(peer, message.at, now)
        socket_id = next((s for s, seen in self.node.paths.public.items()
                          if seen == message.to), None)  # fmt: skip
        if (not peer.networks or peer.root or isinstance(peer.preferred, DirectPath)
                or socket_id is None or self.node.paths.hard(socket_id)):  # fmt: skip
            self.node.packet_drops["birthday_refused"] += 1
            return
        if message.at not in {e[0] for e in peer.hints if _public_ipv4(e[0])}:
            self.node.packet_drops["birthday_not_observed"] += 1
            return
        last, gap = self._answered.get(peer.address, (-math.inf, MIN_REQUEST_GAP_S))
        busy = peer.address not in self._probing and len(self._probing) >= MAX_PROBING
        if now - last < gap or busy:
            self.node.packet_drops["birthday_too_often"] += 1
            return
        # (Silent for four gaps: the pair went direct or quiet, and its tries start afresh.)
        gap = MIN_REQUEST_GAP_S if now - last > 4 * gap else min(gap * 2, MOST_TRY_S * 0.75)
        self._answered[peer.address] = (now, gap)
        self.counts["probed"] += 1
        observed = sorted(port for ip, port in peer.hints if ip == message.at)
        center = observed[len(observed) // 2]  # (there is one: ``at`` was checked above)
        low = max(FIRST_PORT, min(center - PROBE_WINDOW // 2, 65536 - PROBE_WINDOW))
        # (Not the ports a root saw: those are paths already, probed as every path is.)
        window = [port for port in range(low, low + PROBE_WINDOW) if port not in observed]
        ports = random_sample(window, PROBES)
        self._probing[peer.address] = _Probing(socket_id, message.at, ports, now,
                                               now + ATTEMPT_S)  # fmt: skip
        self.node.schedule.touch(peer, now)

    def _mark_early_paths(self, peer: Peer, ip: str, now: float) -> None:
        """The spares' own probes can open a path before this request comes (over the relay,
        it comes last): when a spare's mapping got the very port its root sees, which we
        probe anyway. A hard peer is reached at its address through a spare only."""
        if not peer.hard:
            return
        for path in peer.paths.values():
            if (isinstance(path, DirectPath) and path.endpoint[0] == ip and not path.birthday
                    and path.alive(now)):  # fmt: skip
                path.birthday = True
                self.counts["direct"] += 1

    @staticmethod
    def _forget_losers(peer: Peer, ip: str, now: float) -> None:
        """The attempt is over: paths to spares the hard side closed go now (rather than be
        probed every second until they expire); the one our traffic takes stays."""
        for key, path in list(peer.paths.items()):
            if (isinstance(path, DirectPath) and path.birthday and path.endpoint[0] == ip
                    and path is not peer.preferred and not path.alive(now)):  # fmt: skip
                del peer.paths[key]

    def _send_probes(self, peer: Peer, probing: _Probing, now: float) -> None:
        batch, probing.ports = probing.ports[:PROBE_BATCH], probing.ports[PROBE_BATCH:]
        for port in batch:
            self._probe(peer, DirectPath(probing.socket_id, (probing.ip, port)), now)
        probing.next_at = now + PROBE_GAP_S
        # (Twice an attempt: the hard side has closed the spares it did not keep by then.)
        probing.until = now + 2 * ATTEMPT_S
        self.node.schedule.touch(peer, now)

    def _probe(self, peer: Peer, path: DirectPath, now: float) -> None:
        """A probe on a path nobody keeps: its answer, if any, makes the path (first_heard)."""
        self.counts["probes"] += 1
        ping = encode(Ping(0, False, _text(path.endpoint), thin=True))
        self.node.tx.send_on(peer, path, wire.TYPE_CONTROL, ping, now)

    def view(self) -> dict:
        """For GET /status counters."""
        return {**{k: self.counts[k] for k in ("attempts", "probed", "probes", "direct")},
                "spareSockets": len(self._kept) + (len(self._attempt.spares)
                                                   if self._attempt else 0)}  # fmt: skip


def _public_ipv4(ip: str) -> bool:
    """An IPv4 address a NAT's outside may have (not one site's own, not special)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return address.version == 4 and not (lan_ip(ip) or address.is_loopback
                                         or address.is_multicast or address.is_unspecified)


def _text(endpoint: Endpoint) -> str:
    return f"{endpoint[0]}/{endpoint[1]}"
