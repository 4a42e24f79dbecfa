"""When a root introduces the two sides of a pair it relays for (pure).

A pair relayed through a root may be able to go direct: after a NAT changed its address the
members only know each other's old endpoints, and a pair behind filtering NATs gets through
only if both sides send at once. So a root that relays for a pair tells both sides where it
sees the other, at once and then with backoff while it keeps relaying for them: they punch
again each time, and a pair is never relayed for good without trying.
"""

from __future__ import annotations

from dataclasses import dataclass

# First retry after this, doubling up to the most; a pair whose data was not relayed for
# PAIR_QUIET_S went direct (or quiet): its next relayed datagram is introduced at once.
FIRST_RETRY_S = 1.0
MOST_RETRY_S = 60.0
PAIR_QUIET_S = 3.0
# Pairs remembered at most (a root relays for many): the quiet ones go first.
MAX_PAIRS = 4096


@dataclass
class _Pair:
    next_at: float
    interval: float
    last_relayed: float


class RelayIntroductions:
    def __init__(self) -> None:
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self.sent = 0  # introductions of relayed pairs made (each tells both sides)

    def __len__(self) -> int:
        return len(self._pairs)

    def due(self, a: str, b: str, now: float) -> bool:
        """Data is relayed between ``a`` and ``b`` now: whether to introduce them."""
        key = (a, b) if a < b else (b, a)
        pair = self._pairs.get(key)
        if pair is None or now - pair.last_relayed > PAIR_QUIET_S:
            if pair is None and len(self._pairs) >= MAX_PAIRS:
                self._forget_quiet(now)
            pair = self._pairs[key] = _Pair(now, FIRST_RETRY_S, now)
        pair.last_relayed = now
        if now < pair.next_at:
            return False
        pair.next_at = now + pair.interval
        pair.interval = min(pair.interval * 2, MOST_RETRY_S)
        self.sent += 1
        return True

    def _forget_quiet(self, now: float) -> None:
        quiet = [k for k, p in self._pairs.items() if now - p.last_relayed > PAIR_QUIET_S]
        for key in quiet or sorted(self._pairs, key=lambda k: self._pairs[k].last_relayed)[
            : len(self._pairs) // 2
        ]:
            del self._pairs[key]
