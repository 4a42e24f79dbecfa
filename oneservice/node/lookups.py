"""Look-ups through the roots (pure): the addresses being looked for, when to ask again, when
to give up, and the control messages waiting for each (bounded; what is dropped is counted)."""

from __future__ import annotations

import math
from collections import Counter

# Whois look-ups are retried this often while unanswered, and abandoned after a while.
LOOKUP_RETRY_S = 1.0
LOOKUP_GIVE_UP_S = 30.0
MAX_PENDING_CONTROL = 64


class Lookups:
    def __init__(self, packet_drops: Counter[str]) -> None:
        self._started: dict[str, float] = {}  # address -> when the look-up started
        self._asked: dict[str, float] = {}  # address -> when a whois last went
        self._pending: dict[str, list[dict]] = {}  # address -> control messages waiting
        self._drops = packet_drops

    def __contains__(self, address: str) -> bool:
        return address in self._started

    def start(self, address: str, now: float) -> None:
        self._started.setdefault(address, now)
        self._asked[address] = now

    def hold(self, address: str, message: dict) -> None:
        """A control message for a node not found yet: sent once it is (found)."""
        pending = self._pending.setdefault(address, [])
        if len(pending) < MAX_PENDING_CONTROL:
            pending.append(message)
        else:
            self._drops["queue_full"] += 1

    def holds(self, address: str) -> bool:
        return address in self._pending

    def found(self, address: str) -> list[dict]:
        """The look-up is over (or was never needed): what waited for the node."""
        self._started.pop(address, None)
        self._asked.pop(address, None)
        return self._pending.pop(address, [])

    def due(self, now: float) -> list[str]:
        """Addresses to ask about again now; look-ups unanswered too long are given up, and
        what waited for them is dropped (counted)."""
        again = []
        for address, started in list(self._started.items()):
            if now - started > LOOKUP_GIVE_UP_S:
                self._drops["queue_dropped_unreachable"] += len(self.found(address))
            elif now - self._asked[address] >= LOOKUP_RETRY_S:
                again.append(address)
        return again

    def next_due(self) -> float:
        return min((min(started + LOOKUP_GIVE_UP_S, self._asked[address] + LOOKUP_RETRY_S)
                    for address, started in self._started.items()), default=math.inf)  # fmt: skip
