"""When each peer's turn comes: a heap of (due, order, peer), fed by deadlines.

A peer whose state changed is "touched"; its deadline is worked out again (by the rule the
owner passes in) before the timer is next read, so one burst of changes costs one look per
peer. An entry may be earlier than the peer's deadline (the deadline moved later): it is moved
when it comes up, instead of being searched for in the heap.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

from .peer import Peer


class PeerSchedule:
    def __init__(self, now: float, deadline: Callable[[Peer, float], float],
                 known: Callable[[Peer], bool]) -> None:  # fmt: skip
        self._deadline = deadline  # when a peer's turn next has work (Upkeep.deadline)
        self._known = known  # whether a peer is still one of ours (forgotten ones are skipped)
        self._timers: list[tuple[float, int, Peer]] = []
        self._order = itertools.count()
        self._touched: set[Peer] = set()
        self.clock = now  # the latest time any call told us

    def touch(self, peer: Peer, now: float) -> None:
        """Something about this peer changed: its deadline is worked out again before the
        timer is next read."""
        self._touched.add(peer)
        if now > self.clock:
            self.clock = now

    def forget(self, peer: Peer) -> None:
        self._touched.discard(peer)

    def next_due(self) -> float:
        """When the first peer's turn comes (inf: none has work)."""
        self._schedule_touched()
        timers = self._timers
        while timers:
            due, _, peer = timers[0]
            if due != peer.scheduled or not self._known(peer):
                heapq.heappop(timers)  # superseded by an earlier entry, or forgotten
            elif peer.due > due:
                heapq.heappop(timers)  # its deadline moved later: so does its entry
                self._push(peer)
            else:
                break
        return timers[0][0] if timers else math.inf

    def run_due(self, now: float, turn: Callable[[Peer, float], None]) -> None:
        """Give every peer whose deadline has come its turn, then schedule its next one."""
        self.clock = max(self.clock, now)
        self._schedule_touched()
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, _, peer = heapq.heappop(timers)
            if due != peer.scheduled or not self._known(peer):
                continue
            peer.scheduled = math.inf
            if peer.due > now:
                self._push(peer)
                continue
            turn(peer, now)
            if self._known(peer):
                self._touched.discard(peer)
                self._set_due(peer, self._deadline(peer, now))  # later than now: its turn did
                # what was due (upkeep.py)

    def _schedule_touched(self) -> None:
        touched, self._touched = self._touched, set()
        for peer in touched:
            if self._known(peer):
                self._set_due(peer, self._deadline(peer, self.clock))

    def _set_due(self, peer: Peer, due: float) -> None:
        peer.due = due
        if due < peer.scheduled:
            self._push(peer)

    def _push(self, peer: Peer) -> None:
        peer.scheduled = peer.due
        if peer.due < math.inf:
            heapq.heappush(self._timers, (peer.due, next(self._order), peer))
