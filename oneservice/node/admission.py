"""Which handshake initiations get the node's time, and when (pure: time comes in as ``now``).

A node must stay usable for its established peers whatever strangers send. The costs, cheapest
first: a MAC check (mac1, node/cookies.py), a cookie reply, a Noise initiation (two
Diffie-Hellman computations, ~0.2 ms), and for a node we never heard of the scrypt run that
checks its address (~40 ms, 16 MiB). So:

- mac1 comes first: a datagram that does not know our key costs one keyed hash.
- Under load (more initiations than LOAD_RATE per second, or a backlog), an initiation must
  carry a valid mac2, proof that its sender receives at its source address; otherwise it gets a
  cookie reply and nothing else. Floods from spoofed addresses end here.
- Then the per-source and total rate limits, then a bounded queue: initiations are handled after
  the transport datagrams of the same wake-up, so established traffic goes first.
- Address checks of unknown identities never run on the event loop: the core asks for them
  (IdentityChecks.take_requests) and the service runs them on a worker thread, a bounded number
  at a time and at most two per source address, so one source cannot keep a newcomer out.
  Results are cached.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

# Per source address a burst of 10 initiations, then 20 per second (WireGuard's rate: many
# members may share one address behind a NAT); 500 per second in all.
HANDSHAKES_PER_SOURCE_BURST = 10
HANDSHAKES_PER_SOURCE_RATE = 20.0
HANDSHAKES_TOTAL_RATE = 500.0
MAX_RATE_LIMITED_SOURCES = 4096
# More initiations than this per second (a burst of as many) puts the node under load, and it
# stays so for LOAD_HOLD_S after the last excess: cookies are then required.
LOAD_RATE = 50.0
LOAD_HOLD_S = 1.0
# Initiations waiting for their Diffie-Hellman; at this many waiting the node is under load.
MAX_QUEUED_INITIATIONS = 64
LOAD_QUEUE_LENGTH = 8
# Nodes we never heard of cost a scrypt run (~40 ms of a core). A root or a controller meets
# them (nodes to be found, joiners): at most UNKNOWN_PEERS_PER_S new ones a second, about a
# fifth of a core. Any other node has little reason to (its peers are named by its configs,
# roots and introductions; a stranger may be the true holder of a member's address, see
# node/vouching.py): at most QUIET_UNKNOWN_PEERS_PER_S, a few percent of a core. From one
# source address at most UNKNOWN_PEERS_PER_SOURCE_PER_S, so that a newcomer gets its turn while
# a few addresses flood. And this many waiting or being checked at once, this many of them from
# one source address.
UNKNOWN_PEERS_PER_S = 5.0
QUIET_UNKNOWN_PEERS_PER_S = 0.2
UNKNOWN_PEERS_PER_SOURCE_PER_S = 1.0
UNKNOWN_PEERS_PER_SOURCE_BURST = 2.0
MAX_IDENTITY_CHECKS = 16
MAX_IDENTITY_CHECKS_PER_SOURCE = 2
# An initiation waiting for its identity check is answered only while its initiator still
# waits for it (it retries every second with a new one).
IDENTITY_WAIT_S = 2.0
# Checked identities remembered (x25519 + ed25519 key -> address).
MAX_KNOWN_IDENTITIES = 8192


class TokenBucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens, self.updated = tokens, now

    def take(self, now: float, rate: float, burst: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class HandshakeLimits:
    """Load detection and the rate limits, per source address and in all."""

    def __init__(self, now: float) -> None:
        self._sources: dict[str, TokenBucket] = {}
        self._total = TokenBucket(HANDSHAKES_TOTAL_RATE, now)
        self._arrivals = TokenBucket(LOAD_RATE, now)
        self._loaded_until = -math.inf

    def under_load(self, now: float, backlog: int) -> bool:
        """Called once per initiation that passed mac1: it counts towards the load."""
        if not self._arrivals.take(now, LOAD_RATE, LOAD_RATE) or backlog >= LOAD_QUEUE_LENGTH:
            self._loaded_until = now + LOAD_HOLD_S
        return now < self._loaded_until

    def allowed(self, source: str, now: float) -> bool:
        bucket = self._sources.get(source)
        if bucket is None:
            if len(self._sources) >= MAX_RATE_LIMITED_SOURCES:
                self._sources.clear()
            bucket = self._sources[source] = TokenBucket(HANDSHAKES_PER_SOURCE_BURST, now)
        if not bucket.take(now, HANDSHAKES_PER_SOURCE_RATE, HANDSHAKES_PER_SOURCE_BURST):
            return False
        return self._total.take(now, HANDSHAKES_TOTAL_RATE, HANDSHAKES_TOTAL_RATE)


IdentityKey = bytes  # x25519 public + ed25519 public


@dataclass
class _Check:
    source: str
    waiting: list[tuple[float, Any]] = field(default_factory=list)  # (since, what waits)


class IdentityChecks:
    """Unknown identities whose address is being derived, and the initiations waiting on them.
    Every initiation that waits here is either handed back or counted in ``drops``."""

    def __init__(self, now: float, drops: Counter[str]) -> None:
        self._known: dict[IdentityKey, str] = {}
        self._checks: dict[IdentityKey, _Check] = {}
        self._requests: deque[IdentityKey] = deque()
        self._asked: set[IdentityKey] = set()  # verify(): asked for, not yet derived
        self._rate = TokenBucket(UNKNOWN_PEERS_PER_S, now)
        self._source_rates: dict[str, TokenBucket] = {}  # oldest first, bounded
        self._drops = drops

    def known(self, key: IdentityKey) -> str | None:
        return self._known.get(key)

    def pending(self) -> int:
        return len(self._checks)

    def wait(self, key: IdentityKey, source: str, waiter: Any, now: float,
             meets_strangers: bool = True) -> bool:  # fmt: skip
        """Have ``waiter`` wait for this identity's check; False (counted) if it cannot.
        ``meets_strangers``: we are a root or a controller (the higher rate applies)."""
        check = self._checks.get(key)
        if check is None:
            reason = None
            if len(self._checks) >= MAX_IDENTITY_CHECKS:
                reason = "identity_checks_full"
            elif sum(c.source == source for c in self._checks.values()) >= (
                MAX_IDENTITY_CHECKS_PER_SOURCE
            ):
                reason = "identity_checks_per_source"
            elif not self._rates_allow(source, now, meets_strangers):
                reason = "unknown_peer_rate_limited"
            if reason is not None:
                self._drops[reason] += 1
                return False
            check = self._checks[key] = _Check(source)
            self._requests.append(key)
        # The newest initiations of an initiator are the ones it waits for: two are plenty.
        if len(check.waiting) >= 2:
            check.waiting.pop(0)
            self._drops["handshake_superseded"] += 1
        check.waiting.append((now, waiter))
        return True

    def _rates_allow(self, source: str, now: float, meets_strangers: bool) -> bool:
        """One more new identity from ``source`` now: within its source's rate and ours."""
        bucket = self._source_rates.get(source)
        if bucket is None:
            if len(self._source_rates) >= MAX_RATE_LIMITED_SOURCES:
                del self._source_rates[next(iter(self._source_rates))]
            bucket = self._source_rates[source] = TokenBucket(UNKNOWN_PEERS_PER_SOURCE_BURST, now)
        rate = UNKNOWN_PEERS_PER_S if meets_strangers else QUIET_UNKNOWN_PEERS_PER_S
        return (bucket.take(now, UNKNOWN_PEERS_PER_SOURCE_PER_S, UNKNOWN_PEERS_PER_SOURCE_BURST)
                and self._rate.take(now, rate, max(rate, 1.0)))  # fmt: skip

    def verify(self, key: IdentityKey) -> None:
        """Derive this identity's address too, with nothing waiting and none of the limits
        above: a member named by a config, whose identity is in dispute (node/vouching.py).
        Configs are bounded; strangers' initiations are not."""
        if key not in self._known and key not in self._checks and key not in self._asked:
            self._asked.add(key)
            self._requests.append(key)

    def take_requests(self) -> list[IdentityKey]:
        """Identities to derive (off the event loop); each is asked for once."""
        requests = list(self._requests)
        self._requests.clear()
        return requests

    def derived(self, key: IdentityKey, address: str | None, now: float) -> list[Any]:
        """The address of ``key`` (None: the check failed); what still waits for it."""
        check = self._checks.pop(key, None)
        self._asked.discard(key)
        if address is not None:
            if len(self._known) >= MAX_KNOWN_IDENTITIES:
                self._known.clear()
            self._known[key] = address
        if check is None:
            return []
        fresh = [w for since, w in check.waiting if now - since <= IDENTITY_WAIT_S]
        if address is None:
            self._drops["identity_check_failed"] += len(check.waiting)
            return []
        self._drops["identity_check_late"] += len(check.waiting) - len(fresh)
        return fresh

    def next_due(self) -> float:
        """When expire next has a check to abandon."""
        return min((max(since for since, _ in check.waiting) + 10 * IDENTITY_WAIT_S
                    for check in self._checks.values() if check.waiting),
                   default=math.inf)  # fmt: skip

    def expire(self, now: float) -> None:
        """Checks never answered (the service lost one) do not hold their slot forever."""
        for key, check in list(self._checks.items()):
            if all(now - since > 10 * IDENTITY_WAIT_S for since, _ in check.waiting):
                del self._checks[key]
                self._drops["identity_check_late"] += len(check.waiting)
