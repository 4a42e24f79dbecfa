"""A peer's turn in the timer: what is due (forgetting, retries, expiry, probes) and when its
next turn comes.

Each job is written once, as a pair: when it is due, and what it does then. A peer's deadline
is the earliest due time of its jobs; its turn runs, in order, every job due by then. A job
that has run is no longer due (it moved the fields its due time is made of), so a turn never
leaves work behind that would wake it again at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .context import NodeContext
from .lifecycle import Event, State
from .peer import Peer, is_active, is_needed, is_wanted, probe_interval, window
from .timing import (
    ACTIVE_WINDOW_S,
    DEADLINE_SLACK_S,
    HANDSHAKE_GIVE_UP_S,
    HANDSHAKE_RETRY_S,
    IDLE_PROBE_INTERVAL_S,
    IDLE_PROBE_YIELD_S,
    LEARNED_PATH_EXPIRY_S,
    NO_PATH_HANDSHAKE_S,
    QUIET_PROBE_S,
    REJECT_AFTER_S,
    TRANSIENT_IDLE_S,
    UNREACHABLE_RETRY_S,
)

Jobs = tuple[tuple[Callable[[Peer, float], float], Callable[[Peer, float], None]], ...]


class Upkeep:
    def __init__(self, node: NodeContext) -> None:
        self.node = node
        # In the order a turn runs them: (when due, what it does). Between the sessions' jobs
        # and the paths' a turn looks for a path (_look_for_a_path).
        self._session_jobs: Jobs = (
            (self._abandon_due, self._abandon),
            (self._retry_due, self._retry),
            (self._expiry_due, self._expire),
            (self._learned_expiry_due, self._expire_learned_paths),
        )
        self._path_jobs: Jobs = (
            (self._no_path_due, self._handshake_for_a_path),
            (self._probe_due, self._probe),
            (self._quiet_due, self._probe_now),
            (node.birthday.due, node.birthday.run),
        )
        self._jobs = (*self._session_jobs, (self._death_due, self._look_for_a_path),
                      *self._path_jobs)  # fmt: skip

    def deadline(self, peer: Peer, now: float) -> float:
        """When the peer's next turn has work (woken just after, so that it has passed)."""
        return max(self.earliest_job(peer, now), now) + DEADLINE_SLACK_S

    def earliest_job(self, peer: Peer, now: float) -> float:
        """The earliest due time of the peer's jobs (inf: none)."""
        forget = self._idle_transient_due(peer) if not peer.keep else math.inf
        if self._dormant(peer):
            return forget
        return min(forget, *(job_due(peer, now) for job_due, _ in self._jobs))

    def tick(self, peer: Peer, now: float) -> None:
        """The peer's turn: every job due by ``now``, in order."""
        if not peer.keep:
            if self._idle_transient_due(peer) <= now:
                self.node.registry.forget(peer, now)
                return
            if self._dormant(peer):
                return  # it reached us once; it can reach us again
        # At every turn, relay paths are offered (direct ones were tried first).
        self.node.paths.add_relay_paths(peer)
        for job_due, job in self._session_jobs:
            if job_due(peer, now) <= now:
                job(peer, now)
        # A peer without a working path (or a session to use it with), or whose path has
        # died, looks for one at every turn.
        if peer.preferred is None or peer.current is None or self._death_due(peer, now) <= now:
            self._look_for_a_path(peer, now)
        for job_due, job in self._path_jobs:
            if job_due(peer, now) <= now:
                job(peer, now)

    # --- the jobs ------------------------------------------------------------------------------

    @staticmethod
    def _dormant(peer: Peer) -> bool:
        """A stranger with no session and no handshake: nothing to do but forget it."""
        return not peer.keep and peer.current is None and peer.handshake is None

    @staticmethod
    def _idle_transient_due(peer: Peer) -> float:
        """A stranger (transient peer) is forgotten when idle this long."""
        return max(peer.last_heard, peer.handshake_sent) + TRANSIENT_IDLE_S

    @staticmethod
    def _abandon_due(peer: Peer, now: float) -> float:
        """Our handshake in flight, which nothing needs any more: given up, not retried."""
        if peer.handshake is None or is_wanted(peer, now):
            return math.inf
        return peer.handshake_sent + HANDSHAKE_RETRY_S

    def _abandon(self, peer: Peer, now: float) -> None:
        self.node.machine.fire(peer, Event.ABANDON, now)

    def _retry_due(self, peer: Peer, now: float) -> float:
        """Every member wanted is tried until it answers: quickly at first, then every few
        seconds once it is clearly unreachable (what waited for it is then dropped)."""
        if peer.handshake is None and peer.current is not None:
            return math.inf
        if not is_wanted(peer, now):
            return math.inf
        if not (peer.paths or (not peer.root and self.node.roots.connected())):
            return math.inf  # nowhere to send it (relay paths come at the turn)
        waited = peer.handshake_sent + HANDSHAKE_RETRY_S - peer.handshake_started
        slow = peer.handshake is not None and waited > HANDSHAKE_GIVE_UP_S
        return peer.handshake_sent + (UNREACHABLE_RETRY_S if slow else HANDSHAKE_RETRY_S)

    def _retry(self, peer: Peer, now: float) -> None:
        waited = now - peer.handshake_started if peer.handshake is not None else 0.0
        if waited > HANDSHAKE_GIVE_UP_S and peer.state is State.HANDSHAKING:
            self.node.machine.fire(peer, Event.GIVE_UP, now)
        self.node.machine.fire(peer, Event.RETRY_DUE, now)

    @staticmethod
    def _expiry_due(peer: Peer, now: float) -> float:
        """The session we send on ends at REJECT_AFTER_S (a new handshake starts)."""
        current = peer.current
        return math.inf if current is None else current.created_at + REJECT_AFTER_S

    def _expire(self, peer: Peer, now: float) -> None:
        self.node.machine.fire(peer, Event.EXPIRED, now)

    @staticmethod
    def _learned_expiry_due(peer: Peer, now: float) -> float:
        """An endpoint we learned from the peer (it roamed) and have not heard from since."""
        return min((p.last_received + LEARNED_PATH_EXPIRY_S for p in peer.paths.values()
                    if p.learned), default=math.inf)  # fmt: skip

    def _expire_learned_paths(self, peer: Peer, now: float) -> None:
        for key, path in list(peer.paths.items()):
            if path.learned and path.last_received + LEARNED_PATH_EXPIRY_S <= now:
                del peer.paths[key]
                if peer.preferred is path:
                    peer.preferred = None

    @staticmethod
    def _death_due(peer: Peer, now: float) -> float:
        """The preferred path dies: silent past its window, or its probe unanswered."""
        if peer.current is None or peer.preferred is None:
            return math.inf
        return peer.preferred.dies_at(window(peer, now))

    def _look_for_a_path(self, peer: Peer, now: float) -> None:
        self.node.paths.reselect(peer, now)

    @staticmethod
    def _no_path_due(peer: Peer, now: float) -> float:
        """No path has worked with the session we send on for a while (probes had their
        chance: a roam is over by now). The far end may have lost it (a restart; or a second
        process with the same identity, a controller sharing its database, is the one left):
        a new handshake on every path finds out, retried while none answers."""
        if (peer.current is None or peer.preferred is not None or peer.handshake is not None
                or not peer.paths or not is_needed(peer, now)):  # fmt: skip
            return math.inf
        return peer.no_path_since + NO_PATH_HANDSHAKE_S

    def _handshake_for_a_path(self, peer: Peer, now: float) -> None:
        self.node.machine.fire(peer, Event.NEED, now)

    @staticmethod
    def _probe_due(peer: Peer, now: float) -> float:
        return math.inf if peer.current is None else peer.next_probe

    def _probe(self, peer: Peer, now: float) -> None:
        interval = probe_interval(peer, now)
        heard = self.idle_and_heard(peer, now, interval)
        if heard is not None:
            peer.next_probe = heard + interval + IDLE_PROBE_YIELD_S
        else:
            peer.next_probe = now + interval
            self.node.paths.probe(peer, now)

    @staticmethod
    def _quiet_due(peer: Peer, now: float) -> float:
        """The peer was talking and has stopped while we still send: ask now rather than at
        the next scheduled probe (a silent failure costs ~0.7 s instead of ~1.5 s). One-way
        flows (nothing comes back anyway) keep the one-per-second probes. The path is looked
        at when it has been quiet for QUIET_PROBE_S (sending does not touch the peer at every
        packet, so whether we still send is read then); due then if we still send and the
        peer talked lately."""
        path = peer.preferred
        if (peer.current is None or path is None or path.probe_outstanding()
                or not is_active(peer, now)):  # fmt: skip
            return math.inf
        start = max(path.last_received, path.probe_sent) + QUIET_PROBE_S
        if start > now:
            return start
        end = min(peer.last_traffic + QUIET_PROBE_S, peer.last_data_received + ACTIVE_WINDOW_S)
        return start if now < end else math.inf

    def _probe_now(self, peer: Peer, now: float) -> None:
        self.node.paths.probe(peer, now)

    @staticmethod
    def idle_and_heard(peer: Peer, now: float, interval: float) -> float | None:
        """When we last heard over an idle peer's preferred path, if that was recent enough
        to skip our own probe of it (the peer keeps probing: it is the one that hears less)."""
        path = peer.preferred
        if interval != IDLE_PROBE_INTERVAL_S or path is None or path.strict:
            return None
        return path.last_received if now - path.last_received < interval / 2 else None
